"""Serving ASGI apps with uvicorn, for `restoration api` and `restoration dev`: `run_servers`.

The port is bound before anything else starts (`bind_listener`), so a port already in use is one
`ConfigError` line and a non-zero exit instead of a start-up that fails half-way. SIGINT/SIGTERM
stop the servers gracefully and the process exits 0: uvicorn's own handler would re-raise the
signal after shutting down (exit status -15).

A flood of connections that never finish a request costs little: uvicorn has no deadline for a
request head, so the API's HTTP protocol (`head_deadline_protocol`, a subclass of the one uvicorn
would pick) closes a connection whose head is not complete within `HTTP_HEADER_TIMEOUT_SECONDS` of
its opening, or of its going idle between two requests (idle keep-alive connections are closed
sooner, by uvicorn's `timeout_keep_alive`). `limit_concurrency` caps the connections one process
holds, and `run_servers` raises the soft open-files limit to the hard one, so that cap, not "Too
many open files", is what a flood meets. At the cap a new connection makes room: the connections
that have waited longest for a request head (half-sent heads, idle keep-alives) are closed, so a
flood of heads that never complete cannot lock out a client that sends its request at once. A
connection with a request in progress is never closed for room; when that many requests are in
progress, a new request gets uvicorn's 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import signal
import socket
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from settings import ConfigError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Seconds in-flight requests get once a stop was asked for.
GRACEFUL_SHUTDOWN_SECONDS = 10
# uvicorn buffers a websocket message whole before our handler sees it: refuse anything much
# larger than the largest message we accept (`gql.sockets.MAX_WS_MESSAGE_BYTES`) at the protocol.
WS_MAX_MESSAGE_BYTES = 64 * 1024 + 1024
# uvicorn has no start-up event to await; this is how often its `started` flag is looked at.
START_POLL_SECONDS = 0.02
# A client gets this long to send a whole request head; what a slow mobile link needs, and short
# enough that half-sent heads (a slowloris flood) free their sockets quickly.
HTTP_HEADER_TIMEOUT_SECONDS = 10.0
# Concurrent connections one API process holds; beyond it uvicorn answers 503.
API_MAX_CONNECTIONS = 1000
# An idle keep-alive connection is closed after this long (uvicorn's default, kept explicit).
KEEP_ALIVE_SECONDS = 5

log = logging.getLogger(__name__)


# Per server: its connections now waiting for a request head, the longest waiting first.
_WAITING: weakref.WeakKeyDictionary[ServerState, OrderedDict[_HeadDeadline, None]] = weakref.WeakKeyDictionary()


class _HeadDeadline(asyncio.Protocol):
    """Closes the connection when a request head is not complete `head_timeout_seconds` after the
    connection opened or went idle (the deadline does not move as bytes trickle in); at the
    connection cap, closes the connections waiting longest for a head to make room."""

    head_timeout_seconds: float = HTTP_HEADER_TIMEOUT_SECONDS
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    server_state: ServerState
    limit_concurrency: int | None
    _head_deadline: asyncio.TimerHandle | None = None

    def _waiting(self) -> OrderedDict[_HeadDeadline, None]:
        return _WAITING.setdefault(self.server_state, OrderedDict())

    def _arm_head_deadline(self) -> None:
        if self._head_deadline is None and not self.transport.is_closing():
            self._head_deadline = self.loop.call_later(self.head_timeout_seconds, self._head_timed_out)
            self._waiting()[self] = None

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None
            self._waiting().pop(self, None)

    def _make_room(self) -> None:
        """Keep the connections under the cap (uvicorn answers 503 at it) by closing the ones that
        have waited longest for a request head; never this one, never one with a request going."""
        if self.limit_concurrency is None:
            return
        waiting = self._waiting()
        excess = len(self.server_state.connections) - (self.limit_concurrency - 1)
        closed = 0
        while excess > 0 and waiting:
            oldest = next(iter(waiting))
            if oldest is self:
                break
            oldest._cancel_head_deadline()
            oldest.transport.close()
            # Not counted from now on (uvicorn's `connection_lost` discards it again later): a
            # request arriving before that runs must not meet the cap this closing made room under.
            self.server_state.connections.discard(oldest)
            excess -= 1
            closed += 1
        if closed:
            log.debug("http.room_made", extra={"closed": closed})

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        self._waiting().pop(self, None)
        if not self.transport.is_closing():
            log.debug("http.header_timeout", extra={"seconds": self.head_timeout_seconds})
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # the protocol class after this mixin in the MRO
        self._arm_head_deadline()
        self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)


def _pick_protocol() -> type[asyncio.Protocol]:
    """The HTTP protocol uvicorn's `auto` would pick (httptools when installed, else h11), with
    the head deadline."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools is a dependency; h11 is uvicorn's fallback
        return H11WithHeadDeadline

    class HttpToolsWithHeadDeadline(_HeadDeadline, HttpToolsProtocol):
        def on_headers_complete(self) -> None:
            self._cancel_head_deadline()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # uvicorn arms its keep-alive timer only when no pipelined request is waiting: idle.
            if self.timeout_keep_alive_task is not None:
                self._arm_head_deadline()

    return HttpToolsWithHeadDeadline


class H11WithHeadDeadline(_HeadDeadline, H11Protocol):
    """uvicorn's h11 protocol with the head deadline: armed whenever h11 waits for a request head."""

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is h11.IDLE:
            self._arm_head_deadline()
        else:
            self._cancel_head_deadline()


AutoWithHeadDeadline = _pick_protocol()


def head_deadline_protocol(
    seconds: float, *, base: type[asyncio.Protocol] = AutoWithHeadDeadline
) -> type[asyncio.Protocol]:
    """`base` (an HTTP protocol with the head deadline) closing heads not complete in `seconds`."""
    return type(base.__name__, (base,), {"head_timeout_seconds": seconds})


def raise_open_file_limit() -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; returns (soft, hard) as now set."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):  # a platform refusing it keeps the soft limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft, hard


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to `serve_until_signalled` (several may share a process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def api_config(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    log_level: str,
    header_timeout_seconds: float = HTTP_HEADER_TIMEOUT_SECONDS,
    max_connections: int = API_MAX_CONNECTIONS,
) -> uvicorn.Config:
    """How the API is served, for `restoration api` and `restoration dev` alike."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,  # uvicorn's lines go through the process's one handler and format
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        ws_max_size=WS_MAX_MESSAGE_BYTES,
        http=head_deadline_protocol(header_timeout_seconds),
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        limit_concurrency=max_connections,
    )


@dataclass(frozen=True)
class Listening:
    """An ASGI server (its uvicorn config) to run on a socket that is already bound."""

    config: uvicorn.Config
    listener: socket.socket


def bind_listener(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (port 0 = any free one); ConfigError when it cannot be had."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
        raise ConfigError(f"port {port} on {host} {reason}; choose another with --port or PORT=") from exc
    return listener


def run_servers(servers: Sequence[Listening], *, on_started: Callable[[], None]) -> None:
    """Run `serve_until_signalled` on the event loop uvicorn would pick (uvloop when installed),
    with the open-files limit raised as far as the process may."""
    soft, hard = raise_open_file_limit()
    log.debug("process.open_files_limit", extra={"soft": soft, "hard": hard})
    with asyncio.Runner(loop_factory=servers[-1].config.get_loop_factory()) as runner:
        runner.run(serve_until_signalled(servers, on_started=on_started))


async def serve_until_signalled(servers: Sequence[Listening], *, on_started: Callable[[], None]) -> None:
    """Start the servers in order, call `on_started`, and run until SIGINT/SIGTERM or until one of
    them stops; then stop them in reverse order, each after its graceful shutdown."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    running: list[tuple[_Server, asyncio.Task[None]]] = []
    try:
        for item in servers:
            server = _Server(item.config)
            task = asyncio.create_task(server.serve(sockets=[item.listener]))
            running.append((server, task))
            while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn has no start event
                await asyncio.sleep(START_POLL_SECONDS)
            if task.done():
                return
        on_started()
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([stopped, *(task for _, task in running)], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
    finally:
        for server, task in reversed(running):
            server.should_exit = True
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
