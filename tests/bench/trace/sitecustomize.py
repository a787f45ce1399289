"""Step timings of the real `restoration` processes, for `overhead.py --trace` (never in production).

Put this folder on PYTHONPATH and set RESTORATION_BENCH_TRACE to a file: every process then
wraps the pipeline's steps (S3, ComfyUI calls, database writes, image work, publishing) and
appends one JSON line per call: step, process, start and end (time.time()).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import sys
import threading
import time
from typing import Any

TARGET = os.environ.get("RESTORATION_BENCH_TRACE")
STEPS = {
    "storage.s3": ["S3Storage.get_bytes", "S3Storage.put_bytes", "S3Storage.put_file"],
    "comfy.client": [
        "ComfyClient.upload_image",
        "ComfyClient.queue_prompt",
        "ComfyClient.wait",
        "ComfyClient.history",
        "ComfyClient.view",
    ],
    "models.repository": ["claim_job", "record_server", "complete_job", "create_job"],
    "tasks.restore": ["prepare_for_comfy", "strip_png_metadata", "Restorer._changed"],
    "tasks.held_slot": ["HeldSlot.release"],
    "tasks.queue": ["JobQueue.enqueue"],
    "gql.intake": ["inspect_image"],
}
_lock = threading.Lock()


def _write(step: str, start: float, end: float) -> None:
    line = json.dumps({"step": step, "pid": os.getpid(), "start": start, "end": end}) + "\n"
    with _lock, open(TARGET or os.devnull, "a") as out:
        out.write(line)


def _wrap(step: str, func: Any) -> Any:
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def traced_async(*args: Any, **kwargs: Any) -> Any:
            start = time.time()
            try:
                return await func(*args, **kwargs)
            finally:
                _write(step, start, time.time())

        return traced_async

    @functools.wraps(func)
    def traced(*args: Any, **kwargs: Any) -> Any:
        start = time.time()
        try:
            return func(*args, **kwargs)
        finally:
            _write(step, start, time.time())

    return traced


def _install() -> None:
    """Wrap every step that exists (a renamed one is skipped and reported, never fatal)."""
    for module_name, names in STEPS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            print(f"bench trace: {module_name} not traced: {exc}", file=sys.stderr)  # noqa: T201
            continue
        for name in names:
            owner: Any = module
            *path, attribute = name.split(".")
            try:
                for part in path:
                    owner = getattr(owner, part)
                setattr(owner, attribute, _wrap(name, getattr(owner, attribute)))
            except AttributeError:
                print(f"bench trace: {module_name}.{name} not found, not traced", file=sys.stderr)  # noqa: T201
    # gql.jobs imported inspect_image by name: it gets the wrapped one too.
    try:
        jobs = importlib.import_module("gql.jobs")
        if hasattr(jobs, "inspect_image"):
            jobs.inspect_image = importlib.import_module("gql.intake").inspect_image
    except ImportError:
        pass


if TARGET and os.path.basename(sys.argv[0]) == "restoration":
    _install()
