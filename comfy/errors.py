"""What can go wrong when talking to ComfyUI, each with the error code a job fails with.

    JobFailure (models.error_codes)
    └── ComfyError                  base
        ├── ComfyUnavailable        the server cannot be reached or broke the connection
        │   │                       → COMFYUI_UNAVAILABLE, retryable
        │   └── ComfyUnreachable    not even connected: the request was never sent
        ├── ComfyRejected           /prompt refused the graph (400, or 200 with node_errors)
        │                           → COMFYUI_REJECTED, not retryable
        ├── ComfyExecutionError     a node raised while running (`execution_error`)
        │                           → COMFYUI_ERROR, retryable only when it ran out of memory
        ├── ComfyInterrupted        the run was interrupted (`execution_interrupted`)
        │                           → COMFYUI_ERROR, retryable
        ├── ComfyLost               the prompt is in neither queue nor history (ComfyUI restarted)
        │                           → JOB_LOST, retryable
        └── ComfyProtocolError      an answer we cannot understand (not JSON, no output image)
                                    → INTERNAL, not retryable (a mismatch of versions or of the
                                    workflow, which a new submission meets again)

`str(exc)` is the operator's detail (it names the server); `public_message` is for the job's owner
and never names a host, URL, endpoint or file path: text that comes from ComfyUI is passed
through `public_text` first.
"""

from __future__ import annotations

import re
from typing import ClassVar

from models.error_codes import ErrorCode, JobFailure

# ComfyUI's own words can carry URLs, host:port pairs and file paths (a missing model file, a
# traceback line); the job's owner gets the words without them.
_URL = re.compile(r"""\b[a-z][a-z0-9+.\-]*://[^\s'"`()\[\]{}<>,;]+""", re.IGNORECASE)
_PATH = re.compile(r"""[^\s'"`()\[\]{}<>,;]*[/\\][^\s'"`()\[\]{}<>,;]*""")
_HOST = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b|\blocalhost(?::\d+)?\b", re.IGNORECASE)
# Bounded, so a pathological message cannot bloat every read of the job.
PUBLIC_TEXT_LIMIT = 300
# How ComfyUI and PyTorch word a GPU (or CPU) running out of memory: worth trying again later.
_OUT_OF_MEMORY = re.compile(r"out of memory|OutOfMemory|\bOOM\b|would exceed allowed memory", re.IGNORECASE)


def public_text(text: str) -> str:
    """ComfyUI's text without URLs, hosts and paths, on one line, bounded."""
    cleaned = _HOST.sub("<host>", _PATH.sub("<path>", _URL.sub("<url>", text)))
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= PUBLIC_TEXT_LIMIT else cleaned[: PUBLIC_TEXT_LIMIT - 1] + "…"


class ComfyError(JobFailure):
    code: ClassVar[ErrorCode] = ErrorCode.COMFYUI_ERROR
    public_default: ClassVar[str] = "ComfyUI, the restoration engine, failed"


class ComfyUnavailable(ComfyError):
    code = ErrorCode.COMFYUI_UNAVAILABLE
    public_default = "ComfyUI, the restoration engine, could not be reached"

    def __init__(self, base_url: str, reason: str = "") -> None:
        detail = f" ({reason})" if reason else ""
        super().__init__(f"ComfyUI server unavailable at {base_url}{detail}")
        self.base_url = base_url


class ComfyUnreachable(ComfyUnavailable):
    """The connection could not be made (refused, or connecting timed out): nothing was sent, so
    the same request may go to another server."""


class ComfyRejected(ComfyError):
    """`describe_rejection`'s sentence: ComfyUI's reason, cleaned for the owner."""

    code = ErrorCode.COMFYUI_REJECTED
    public_default = "ComfyUI rejected the workflow"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, public_message=public_text(detail))


class ComfyExecutionError(ComfyError):
    code = ErrorCode.COMFYUI_ERROR

    def __init__(self, *, node_id: str, node_type: str, message: str) -> None:
        said = f"ComfyUI node {node_id} ({node_type}) failed: {message}"
        super().__init__(said, public_message=public_text(said), retryable=_OUT_OF_MEMORY.search(message) is not None)
        self.node_id = node_id
        self.node_type = node_type
        self.reason = message


class ComfyInterrupted(ComfyError):
    code = ErrorCode.COMFYUI_ERROR

    def __init__(self, *, node_id: str | None, node_type: str | None) -> None:
        where = f" at node {node_id} ({node_type})" if node_id else ""
        said = f"ComfyUI interrupted the run{where}"
        # Someone stopped this run (an operator, a restart of the queue): the photo is not at fault.
        super().__init__(said, public_message=public_text(said), retryable=True)
        self.node_id = node_id


class ComfyLost(ComfyError):
    code = ErrorCode.JOB_LOST
    public_default = "ComfyUI restarted; the job was lost"

    def __init__(self, prompt_id: str) -> None:
        super().__init__(f"ComfyUI has no record of prompt {prompt_id} (restarted)")
        self.prompt_id = prompt_id


class ComfyProtocolError(ComfyError):
    code = ErrorCode.INTERNAL
    public_default = "ComfyUI, the restoration engine, answered in a way the service did not expect"
