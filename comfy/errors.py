"""What can go wrong when talking to ComfyUI.

    ComfyError                      base; its message is meant for the job's owner
    ├── ComfyUnavailable            the server cannot be reached or broke the connection
    ├── ComfyRejected               /prompt refused the graph (400, or 200 with node_errors)
    ├── ComfyExecutionError         a node raised while running (`execution_error`)
    ├── ComfyInterrupted            the run was interrupted (`execution_interrupted`)
    ├── ComfyLost                   the prompt is in neither queue nor history (ComfyUI restarted)
    └── ComfyProtocolError          an answer we cannot understand (not JSON, no output image)

`kind` is a stable short name for logs and metrics.
"""

from __future__ import annotations


class ComfyError(Exception):
    kind = "comfy"


class ComfyUnavailable(ComfyError):
    kind = "comfy_unavailable"

    def __init__(self, base_url: str, reason: str = "") -> None:
        detail = f" ({reason})" if reason else ""
        super().__init__(f"ComfyUI server unavailable at {base_url}{detail}")
        self.base_url = base_url


class ComfyRejected(ComfyError):
    kind = "comfy_rejected"


class ComfyExecutionError(ComfyError):
    kind = "comfy_execution"

    def __init__(self, *, node_id: str, node_type: str, message: str) -> None:
        super().__init__(f"ComfyUI node {node_id} ({node_type}) failed: {message}")
        self.node_id = node_id
        self.node_type = node_type
        self.detail = message


class ComfyInterrupted(ComfyError):
    kind = "comfy_interrupted"

    def __init__(self, *, node_id: str | None, node_type: str | None) -> None:
        where = f" at node {node_id} ({node_type})" if node_id else ""
        super().__init__(f"ComfyUI interrupted the run{where}")
        self.node_id = node_id


class ComfyLost(ComfyError):
    kind = "comfy_lost"

    def __init__(self, prompt_id: str) -> None:
        super().__init__("ComfyUI restarted; the job was lost")
        self.prompt_id = prompt_id


class ComfyProtocolError(ComfyError):
    kind = "comfy_protocol"
