"""Fault injection: how the next prompts should misbehave (set through ``POST /_emulator/faults``)."""

from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

FaultMode = Literal["ok", "execution_error", "silent_socket", "die", "hang"]
MODES: tuple[str, ...] = ("ok", "execution_error", "silent_socket", "die", "hang")


class FaultSpecError(ValueError):
    """The posted fault description is not understood."""


@dataclass(frozen=True)
class Faults:
    """One prompt's behaviour, fixed when the prompt is queued.

    ``node`` names the node a fault fires at, by node id (``"31"``) or by class type (``"KSampler"``);
    when omitted, ``execution_error`` and ``die`` fire at the first KSampler that executes (or the
    first node that executes if there is none). ``times`` limits the fault to the next N queued
    prompts, after which the emulator behaves normally again (``None`` = until changed or reset).
    """

    mode: FaultMode = "ok"
    node: str | None = None
    exception_type: str = "RuntimeError"
    message: str = "Emulated failure"
    service_time: float | None = None
    large_binary_frame: bool = False
    preview: bool | None = None
    times: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_FIELDS: dict[str, tuple[type, ...]] = {
    "mode": (str,),
    "node": (str, type(None)),
    "exception_type": (str,),
    "message": (str,),
    "service_time": (int, float, type(None)),
    "large_binary_frame": (bool,),
    "preview": (bool, type(None)),
    "times": (int, type(None)),
}


def parse_faults(body: object) -> Faults:
    """Build :class:`Faults` from a JSON object; unknown keys or wrong types raise :class:`FaultSpecError`."""
    if not isinstance(body, dict):
        raise FaultSpecError("faults must be a JSON object")
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise FaultSpecError(f"unknown fault keys: {unknown}; known: {sorted(_FIELDS)}")
    for key, value in body.items():
        allowed = _FIELDS[key]
        if isinstance(value, bool) and bool not in allowed:
            raise FaultSpecError(f"{key} must not be a boolean")
        if not isinstance(value, allowed):
            raise FaultSpecError(f"{key} has the wrong type: {value!r}")
    mode = body.get("mode", "ok")
    if mode not in MODES:
        raise FaultSpecError(f"unknown mode {mode!r}; known: {list(MODES)}")
    service_time = body.get("service_time")
    if service_time is not None and service_time < 0:
        raise FaultSpecError("service_time must be >= 0")
    times = body.get("times")
    if times is not None and times < 1:
        raise FaultSpecError("times must be >= 1")
    fields = {key: value for key, value in body.items() if key != "mode"}
    if service_time is not None:
        fields["service_time"] = float(service_time)
    return Faults(mode=cast(FaultMode, mode), **fields)
