"""``python -m comfy.emulator --port 8188 [--host 127.0.0.1] [--service-time 0.5] [--preview]``.

SIGTERM or SIGINT is a clean shutdown (exit status 0); a port that is already taken is one line on
stderr and exit status 2, before anything else starts.
"""

import argparse
import asyncio
import contextlib
import errno
import logging
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from comfy.emulator.config import COMFYUI_VERSION, EmulatorConfig
from comfy.emulator.server import create_emulator_app

logger = logging.getLogger("comfy.emulator")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Exit status for a command line or port that cannot work (argparse uses 2 as well).
EXIT_BAD_START = 2


class EmulatorStartError(Exception):
    """The emulator cannot start; the message is one line for a person."""


def bind_listener(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the app starts, so a taken port is one clear error."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
        raise EmulatorStartError(f"port {port} on {host} {reason}; choose another with --port") from exc
    return listener


class _Server(uvicorn.Server):
    """uvicorn re-raises a caught SIGTERM after its graceful shutdown (status -15); a stop we asked
    for is a clean exit, so the signals only set `should_exit` here (a second SIGINT forces it)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self._stop, signum)
        try:
            yield
        finally:
            for signum in STOP_SIGNALS:
                loop.remove_signal_handler(signum)

    def _stop(self, signum: int) -> None:
        if self.should_exit and signum == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m comfy.emulator",
        description="A ComfyUI protocol double for tests. It is NOT ComfyUI and runs no models.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--service-time", type=float, default=0.5, help="KSampler seconds per prompt")
    parser.add_argument("--preview", action="store_true", help="send a JPEG preview frame per sampler step")
    parser.add_argument("--root", type=Path, default=None, help="folder for input/ output/ temp/ (default: a temp dir)")
    parser.add_argument("--model", action="append", default=[], help="extra accepted model file name (repeatable)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve the emulator until SIGTERM/SIGINT; the process's exit status."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        listener = bind_listener(args.host, args.port)
    except EmulatorStartError as exc:
        print(f"comfy emulator: {exc}", file=sys.stderr)  # noqa: T201 - the one-line start-up error
        return EXIT_BAD_START
    config = EmulatorConfig(
        host=args.host,
        port=listener.getsockname()[1],
        root=args.root,
        service_time=args.service_time,
        preview=args.preview,
        models=tuple(args.model),
    )
    app = create_emulator_app(config)
    logger.warning(
        "emulator.started",
        extra={
            "note": f"THIS IS THE COMFYUI EMULATOR (a protocol test double mimicking ComfyUI {COMFYUI_VERSION}), "
            "NOT ComfyUI: no models run",
            "url": f"http://{config.host}:{config.port}",
            "root": str(app.state.emulator.folders.root),
            "service_time": config.service_time,
            "previews": config.preview,
        },
    )
    server = _Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            ws="websockets-sansio",
            log_level=args.log_level,
            log_config=None,  # uvicorn's lines go through the process's one handler and format
            access_log=args.log_level == "debug",
            timeout_graceful_shutdown=2,
        )
    )
    with listener:
        server.run(sockets=[listener])
    return 0


if __name__ == "__main__":
    sys.exit(main())
