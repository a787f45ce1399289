"""Serving ASGI apps with uvicorn, for `restoration api` and `restoration dev`: `run_servers`.

The port is bound before anything else starts (`bind_listener`), so a port already in use is one
`ConfigError` line and a non-zero exit instead of a start-up that fails half-way. SIGINT/SIGTERM
stop the servers gracefully and the process exits 0: uvicorn's own handler would re-raise the
signal after shutting down (exit status -15).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp

from settings import ConfigError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Seconds in-flight requests get once a stop was asked for.
GRACEFUL_SHUTDOWN_SECONDS = 10
# uvicorn buffers a websocket message whole before our handler sees it: refuse anything much
# larger than the largest message we accept (`gql.sockets.MAX_WS_MESSAGE_BYTES`) at the protocol.
WS_MAX_MESSAGE_BYTES = 64 * 1024 + 1024
# uvicorn has no start-up event to await; this is how often its `started` flag is looked at.
START_POLL_SECONDS = 0.02


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to `serve_until_signalled` (several may share a process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def api_config(app: ASGIApp, *, host: str, port: int, log_level: str) -> uvicorn.Config:
    """How the API is served, for `restoration api` and `restoration dev` alike."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,  # uvicorn's lines go through the process's one handler and format
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        ws_max_size=WS_MAX_MESSAGE_BYTES,
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
    """Run `serve_until_signalled` on the event loop uvicorn would pick (uvloop when installed)."""
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
