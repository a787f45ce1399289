"""Static configuration of one emulator instance (what ComfyUI would take as command-line flags)."""

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

COMFYUI_VERSION = "0.3.64"
MAX_UPLOAD_SIZE = 100 * 1024 * 1024


def _sigkill_self() -> None:
    """What a crashed ComfyUI looks like from outside: the process vanishes without a goodbye."""
    os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class EmulatorConfig:
    """How to run the double.

    ``root`` holds ``input/``, ``output/`` and ``temp/`` (a fresh temporary directory when ``None``).
    ``service_time`` is the KSampler's total run time in seconds, spread evenly over its steps.
    ``preview`` mimics ``--preview-method auto``: one JPEG preview frame per sampler step.
    ``models`` are extra file names accepted by every model-name combo (``unet_name``, ``clip_name1``,
    ``clip_name2``, ``vae_name``, ``ckpt_name``) besides the names used in ``workflows/restore.json``.
    ``on_die`` runs when a ``die`` fault fires; the default SIGKILLs this process, so only use the
    default when the emulator runs in a process of its own.
    """

    host: str = "127.0.0.1"
    port: int = 8188
    root: Path | None = None
    service_time: float = 0.5
    preview: bool = False
    models: tuple[str, ...] = ()
    max_upload_size: int = MAX_UPLOAD_SIZE
    on_die: Callable[[], None] = field(default=_sigkill_self, repr=False)
