"""A ComfyUI 0.3.64 protocol double ("emulator") for tests: ``python -m comfy.emulator --port 8188``.

It speaks ComfyUI's HTTP and websocket protocol (see /work/shared/comfyui-protocol.md) with cheap CPU
stand-ins for the nodes of the restore workflow, and adds a fault-injection API under ``/_emulator/``.
"""

from comfy.emulator.config import EmulatorConfig
from comfy.emulator.faults import Faults
from comfy.emulator.server import create_emulator_app

__all__ = ["EmulatorConfig", "Faults", "create_emulator_app"]
