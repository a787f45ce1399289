"""Log lines an operator can search: the event name, every `extra=` field, and the traceback."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from settings import load_settings
from tasks.logs import JsonFormatter, TextFormatter, configure_logging
from tests.fixtures.services import PG_HOST, PG_PORT, PG_USER


class Capture:
    """A logger of the test's own whose lines are formatted by the formatter under test."""

    def __init__(self, formatter: logging.Formatter) -> None:
        self.stream = io.StringIO()
        handler = logging.StreamHandler(self.stream)
        handler.setFormatter(formatter)
        self.logger = logging.getLogger(f"tests.logs.{uuid.uuid4().hex[:8]}")
        self.logger.handlers = [handler]
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def json_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.lines()]


@pytest.fixture
def as_json() -> Capture:
    return Capture(JsonFormatter())


@pytest.fixture
def as_text() -> Capture:
    return Capture(TextFormatter())


@pytest.fixture
def root_restored() -> Iterator[None]:
    """configure_logging rewires the root logger; put it back as pytest had it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    access = logging.getLogger("uvicorn.access")
    access_handlers, access_propagate, access_level = list(access.handlers), access.propagate, access.level
    hooks = sys.excepthook, threading.excepthook
    yield
    root.handlers, root.level = handlers, level
    access.handlers, access.propagate = access_handlers, access_propagate
    access.setLevel(access_level)
    sys.excepthook, threading.excepthook = hooks


def test_json_line_has_the_event_its_fields_and_the_standard_keys(as_json: Capture) -> None:
    job_id = uuid.uuid4()
    as_json.logger.info("restore.started", extra={"job_id": job_id, "prompt_id": "p-1", "duration": 1.25})

    [line] = as_json.json_lines()
    assert line["event"] == "restore.started"
    assert line["level"] == "INFO"
    assert line["logger"] == as_json.logger.name
    assert line["job_id"] == str(job_id)
    assert line["prompt_id"] == "p-1"
    assert line["duration"] == 1.25
    assert "exc" not in line


def test_json_timestamp_is_iso_8601_utc(as_json: Capture) -> None:
    before = datetime.now(UTC)
    as_json.logger.info("restore.started")

    [line] = as_json.json_lines()
    ts = str(line["ts"])
    assert ts.endswith("Z")
    logged = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    assert logged.utcoffset() is not None
    assert abs((logged - before).total_seconds()) < 5


def test_json_line_carries_the_traceback_as_exc(as_json: Capture) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        as_json.logger.exception("restore.crashed", extra={"job_id": "j-1"})

    [line] = as_json.lines()  # a traceback stays inside the one line
    record = json.loads(line)
    assert record["event"] == "restore.crashed"
    assert record["job_id"] == "j-1"
    assert "Traceback (most recent call last)" in str(record["exc"])
    assert "RuntimeError: boom" in str(record["exc"])


def test_json_field_named_like_a_standard_key_does_not_replace_it(as_json: Capture) -> None:
    as_json.logger.info("restore.started", extra={"event": "something else", "level": 3})

    [line] = as_json.json_lines()
    assert line["event"] == "restore.started"
    assert line["event_"] == "something else"
    assert line["level"] == "INFO"
    assert line["level_"] == 3


def test_json_writes_values_json_cannot_as_text(as_json: Capture) -> None:
    as_json.logger.info("auth.jwks.fetched", extra={"kids": {"b", "a"}, "where": object()})

    [line] = as_json.json_lines()
    assert line["kids"] == ["a", "b"]
    assert str(line["where"]).startswith("<object object")


def test_message_arguments_of_library_lines_are_rendered_into_the_event(as_json: Capture) -> None:
    as_json.logger.info("Executing %s", "restore: 123")

    [line] = as_json.json_lines()
    assert line["event"] == "Executing restore: 123"


def test_uvicorn_access_line_becomes_searchable_fields(as_json: Capture) -> None:
    access = logging.getLogger("uvicorn.access")
    record = access.makeRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4:5", "GET", "/healthz", "1.1", 200),
        None,
    )
    as_json.logger.handle(record)

    [line] = as_json.json_lines()
    assert line["event"] == "http.access"
    assert (line["client"], line["method"], line["path"], line["http_version"], line["status"]) == (
        "1.2.3.4:5",
        "GET",
        "/healthz",
        "1.1",
        200,
    )


def test_uvicorn_colour_copy_of_its_message_is_not_a_field(as_json: Capture) -> None:
    as_json.logger.info("Started server process [%d]", 42, extra={"color_message": "\x1b[1m42\x1b[0m"})

    [line] = as_json.json_lines()
    assert "color_message" not in line


def test_text_line_shows_the_event_then_key_value_fields(as_text: Capture) -> None:
    as_text.logger.warning("restore.comfy.ws_silent", extra={"client_id": "w-1", "seconds": 30})

    [line] = as_text.lines()
    ts, level, logger, rest = line.split(" ", 3)
    assert datetime.fromisoformat(ts.replace("Z", "+00:00")).utcoffset() is not None
    assert (level, logger) == ("WARNING", as_text.logger.name)
    assert rest == "restore.comfy.ws_silent client_id=w-1 seconds=30"


def test_text_quotes_values_that_would_split_the_pair(as_text: Capture) -> None:
    as_text.logger.info("restore.failed", extra={"error": 'node 7 said "no"', "empty": "", "kids": ["a", "b"]})

    [line] = as_text.lines()
    assert line.endswith('restore.failed error="node 7 said \\"no\\"" empty="" kids=["a","b"]')


def test_text_puts_the_traceback_below_the_line(as_text: Capture) -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        as_text.logger.exception("restore.crashed", extra={"job_id": "j-2"})

    first, *traceback = as_text.lines()
    assert first.endswith("restore.crashed job_id=j-2")
    assert traceback[0] == "Traceback (most recent call last):"
    assert traceback[-1] == "ValueError: bad"


@pytest.mark.usefixtures("root_restored")
def test_configure_logging_sends_every_logger_through_one_handler_and_format() -> None:
    stream = io.StringIO()
    access = logging.getLogger("uvicorn.access")
    access.handlers = [logging.StreamHandler(io.StringIO())]  # what uvicorn's own config would leave
    access.propagate = False
    access.setLevel(logging.NOTSET)  # the level is uvicorn's to set (--log-level); here the root's applies

    configure_logging(level="info", fmt="json", stream=stream)
    logging.getLogger("restore.api").info("restore.submitted", extra={"job_id": "j-3"})
    access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", "/readyz", "1.1", 503)
    logging.getLogger("huey.consumer").debug("below the level: not written")

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["logger"], line["event"]) for line in lines] == [
        ("restore.api", "restore.submitted"),
        ("uvicorn.access", "http.access"),
    ]
    assert logging.getLogger().handlers[0].stream is stream  # type: ignore[attr-defined]
    assert len(logging.getLogger().handlers) == 1


# --- the processes ------------------------------------------------------------------------------

RESTORATION = str(Path(sys.executable).parent / "restoration")
# Start-up is imports and settings, a couple of seconds; a stop is at most the emulator's 2 s grace.
PROCESS_SECONDS = 60


def json_env(home: Path, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LOG_FORMAT": "json", **extra}


def parsed(stderr: bytes) -> list[dict[str, object]]:
    """Every stderr line as a JSON object; fails on any line that is not one."""
    lines = stderr.decode().splitlines()
    assert lines, "the process wrote nothing to stderr"
    objects = []
    for line in lines:
        value = json.loads(line)
        assert isinstance(value, dict), line
        assert {"ts", "level", "logger", "event"} <= value.keys(), line
        objects.append(value)
    return objects


@pytest.mark.slow
async def test_emulator_process_writes_only_json_lines_uvicorn_included(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        RESTORATION, "emulator", "--port", "0", cwd=tmp_path, env=json_env(tmp_path), stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    written = b""
    try:
        async with asyncio.timeout(PROCESS_SECONDS):
            while b"Application startup complete." not in written:
                line = await process.stderr.readline()
                assert line, written.decode()  # exited before it was up
                written += line
            process.send_signal(signal.SIGTERM)
            written += await process.stderr.read()
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    lines = parsed(written)
    assert {"uvicorn.error", "comfy.emulator"} <= {line["logger"] for line in lines}
    [started] = [line for line in lines if line["event"] == "emulator.started"]
    assert str(started["url"]).startswith("http://127.0.0.1:")


@pytest.mark.slow
async def test_migrate_process_writes_only_json_lines(tmp_path: Path, database: str) -> None:
    url = f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"
    process = await asyncio.create_subprocess_exec(
        RESTORATION, "migrate", cwd=tmp_path, env=json_env(tmp_path, DATABASE_URL=url), stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(PROCESS_SECONDS):
        _, stderr = await process.communicate()

    assert process.returncode == 0, stderr.decode()
    [done] = [line for line in parsed(stderr) if line["event"] == "migrate.done"]
    assert done["applied"] == []  # the session's database is migrated already


@pytest.mark.slow
async def test_a_crash_is_one_json_line_with_its_traceback(tmp_path: Path) -> None:
    unreachable = "postgres://nobody@127.0.0.1:1/nothing"  # port 1: nothing listens
    process = await asyncio.create_subprocess_exec(
        RESTORATION,
        "migrate",
        cwd=tmp_path,
        env=json_env(tmp_path, DATABASE_URL=unreachable),
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(PROCESS_SECONDS):
        _, stderr = await process.communicate()

    assert process.returncode != 0
    [crash] = [line for line in parsed(stderr) if line["event"] == "process.crashed"]
    assert crash["level"] == "CRITICAL"
    assert "ConnectionRefusedError" in str(crash["exc"])


async def test_unknown_log_format_is_the_one_line_configuration_error(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        RESTORATION,
        "migrate",
        cwd=tmp_path,
        env={**json_env(tmp_path), "LOG_FORMAT": "xml"},
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(PROCESS_SECONDS):
        _, stderr = await process.communicate()

    assert process.returncode == 2
    assert stderr.decode().splitlines() == [
        "restoration: invalid configuration: LOG_FORMAT: Input should be 'text' or 'json'"
    ]


def test_log_format_is_case_insensitive() -> None:
    assert load_settings(log_format=" JSON ").log_format == "json"


def test_an_access_line_never_records_the_query_string(as_json: Capture) -> None:
    access = logging.getLogger("uvicorn.access")
    signed = "/files/originals/x.jpg?expires=1700000000&signature=deadbeef"
    record = access.makeRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4:5", "GET", signed, "1.1", 200),
        None,
    )
    as_json.logger.handle(record)

    [line] = as_json.json_lines()
    assert line["path"] == "/files/originals/x.jpg"
    assert "deadbeef" not in json.dumps(line)
