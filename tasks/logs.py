"""One log format for every process: `text` for a terminal, `json` for a log pipeline.

Our log messages are stable event names (`restore.submitted`) and their fields travel in `extra=`
(`job_id`, `prompt_id`, `user`, `duration`...); both formatters show every such field. `json`
writes one object per line: `ts` (ISO-8601 UTC), `level`, `logger`, `event`, the fields, and
`exc` when there is a traceback. `text` writes `ts level logger event key=value ...` with the
traceback, if any, on the lines below. Records from libraries (uvicorn, Huey) keep their message
as the event; uvicorn's access lines are split into fields so they can be searched like ours.

`configure_logging` installs the one handler on the root logger; the composition root calls it
once per process, before anything logs. Lines a connection flood repeats by the thousand (asyncio's
accept errors, uvicorn's per-connection warnings) pass at most once per kind per 10 s
(`OncePerInterval`), the next one counting those it held back. It also routes uncaught exceptions (of the main thread as
`process.crashed`, of any other as `thread.crashed`) through it, so a crash is a line like any other.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from enum import Enum
from pathlib import PurePath
from types import TracebackType
from typing import Any, Literal, TextIO
from uuid import UUID

__all__ = ["JsonFormatter", "LogFormat", "OncePerInterval", "TextFormatter", "configure_logging", "record_fields"]

LogFormat = Literal["text", "json"]

# Attributes every LogRecord has; anything else on a record came from `extra=` or a filter.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    # uvicorn repeats its message with ANSI colours for its own formatter; it is not a field.
    "color_message",
}
# The keys a JSON line always has; a field of the same name is written with a trailing `_`.
_BASE_KEYS = frozenset({"ts", "level", "logger", "event", "exc", "stack"})
# uvicorn logs each request as '%s - "%s %s HTTP/%s" %d' with these arguments.
_ACCESS_LOGGER = "uvicorn.access"
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")
ACCESS_EVENT = "http.access"


def timestamp(record: logging.LogRecord) -> str:
    """The record's creation time as ISO-8601 UTC with milliseconds, e.g. `2025-01-31T12:00:00.123Z`."""
    created = datetime.fromtimestamp(record.created, tz=UTC)
    return created.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record carries beyond the standard ones (`extra=`, filters, uvicorn's access data)."""
    fields = {
        key: value for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES and not key.startswith("_")
    }
    access = _access_fields(record)
    return {**access, **fields} if access else fields


def event_of(record: logging.LogRecord) -> str:
    """The event name: the rendered message, or `http.access` for a uvicorn access line."""
    return ACCESS_EVENT if _access_fields(record) else record.getMessage()


def _access_fields(record: logging.LogRecord) -> dict[str, Any]:
    args = record.args
    if record.name != _ACCESS_LOGGER or not isinstance(args, tuple) or len(args) != len(_ACCESS_FIELDS):
        return {}
    fields = dict(zip(_ACCESS_FIELDS, args, strict=True))
    # Query strings carry signatures (image URLs, upload tickets) and tokens: never logged.
    fields["path"] = str(fields["path"]).partition("?")[0]
    return fields


def _jsonable(value: object) -> object:
    """What `json.dumps` cannot write on its own, in the form an operator would search for."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, (UUID, PurePath, bytes)):
        return str(value)
    return repr(value)


def _dumps(value: object) -> str:
    return json.dumps(value, default=_jsonable, ensure_ascii=False, separators=(",", ":"))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, every field, exc when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "event": event_of(record),
        }
        for key, value in record_fields(record).items():
            line[f"{key}_" if key in _BASE_KEYS else key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return _dumps(line)


class TextFormatter(logging.Formatter):
    """`ts level logger event key=value ...`; a traceback follows on its own lines."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [timestamp(record), record.levelname, record.name, event_of(record)]
        parts.extend(f"{key}={_text_value(value)}" for key, value in record_fields(record).items())
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def _text_value(value: object) -> str:
    # Containers, None and booleans as JSON; anything else bare when unambiguous, and quoted
    # (JSON-escaped) when empty or when a space, quote or `=` would split the pair.
    if isinstance(value, (Mapping, list, tuple, set, frozenset, bool)) or value is None:
        return _dumps(value)
    text = str(value)
    if text and not any(char.isspace() or char in "\"'=" for char in text):
        return text
    return _dumps(text)


FORMATTERS: dict[LogFormat, type[logging.Formatter]] = {"text": TextFormatter, "json": JsonFormatter}


def configure_logging(
    *,
    level: str,
    fmt: LogFormat,
    filters: Iterable[logging.Filter] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Make the root logger's one handler write `fmt` to `stream` (stderr), replacing any other.

    Library loggers that install handlers of their own (uvicorn's default config) must be told
    not to (`log_config=None`); everything else propagates here.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(FORMATTERS[fmt]())
    for log_filter in filters:
        handler.addFilter(log_filter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    # A library configured earlier in this process (uvicorn's default dictConfig) would write its own
    # format through its own handlers; its records must reach the root handler instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "huey"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for name in _PER_CONNECTION_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, OncePerInterval) for existing in logger.filters):
            logger.addFilter(OncePerInterval(LOG_STORM_INTERVAL_SECONDS))
    asyncpg_pool = logging.getLogger("asyncpg.pool")
    if not any(isinstance(existing, OutageWithoutTraceback) for existing in asyncpg_pool.filters):
        asyncpg_pool.addFilter(OutageWithoutTraceback())
    return handler


class OutageWithoutTraceback(logging.Filter):
    """asyncpg's pool logs every failed reconnect during a database outage with a full traceback;
    the outage is expected and reported by our own events, so keep the line and drop the traceback
    (its exception's text stays, as `error`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.error = repr(record.exc_info[1])
            record.exc_info = None
            record.exc_text = None
        return True


# Loggers that write a line per connection or per accept: `asyncio` (socket.accept() out of system
# resource, with a traceback, on every retry while files run out) and uvicorn's server logger
# ("Invalid HTTP request received.", "Exceeded concurrency limit.").
_PER_CONNECTION_LOGGERS = ("asyncio", "uvicorn.error")
# One line per kind per this many seconds: enough to see a flood start and end, not a log storm.
LOG_STORM_INTERVAL_SECONDS = 10.0


class OncePerInterval(logging.Filter):
    """Passes a record of a kind (its logger and unformatted message) at most once per `interval`
    seconds; the next one that passes carries `suppressed`, how many were held back since."""

    def __init__(self, interval: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        # kind -> (when one last passed, how many were held back since)
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        kind = (record.name, str(record.msg))
        now = self._clock()
        with self._lock:
            last = self._seen.get(kind)
            if last is not None and now - last[0] < self._interval:
                self._seen[kind] = (last[0], last[1] + 1)
                return False
            self._seen[kind] = (now, 0)
        if last is not None and last[1]:
            record.suppressed = last[1]
        return True


# A crash is logged like everything else, so a log pipeline reading JSON is not handed a bare traceback.
_crash_log = logging.getLogger("restoration")


def _log_uncaught(kind: type[BaseException], exc: BaseException, traceback: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, traceback)
        return
    _crash_log.critical("process.crashed", exc_info=(kind, exc, traceback))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None:
        return
    thread_name = args.thread.name if args.thread is not None else None
    _crash_log.critical(
        "thread.crashed",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        extra={"thread_name": thread_name},
    )
