"""``python -m comfy.emulator --port 8188 [--host 127.0.0.1] [--service-time 0.5] [--preview]``."""

import argparse
import logging
from pathlib import Path

import uvicorn

from comfy.emulator.config import COMFYUI_VERSION, EmulatorConfig
from comfy.emulator.server import create_emulator_app

logger = logging.getLogger("comfy.emulator")


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


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = EmulatorConfig(
        host=args.host,
        port=args.port,
        root=args.root,
        service_time=args.service_time,
        preview=args.preview,
        models=tuple(args.model),
    )
    app = create_emulator_app(config)
    logger.warning(
        "THIS IS THE COMFYUI EMULATOR (a protocol test double mimicking ComfyUI %s), NOT ComfyUI: "
        "no models run. Listening on http://%s:%d, files under %s, service time %.3f s, previews %s.",
        COMFYUI_VERSION,
        config.host,
        config.port,
        app.state.emulator.folders.root,
        config.service_time,
        "on" if config.preview else "off",
    )
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        ws="websockets-sansio",
        log_level=args.log_level,
        access_log=args.log_level == "debug",
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
