"""`restoration submit --watch --cancel-on-interrupt`, the real command against the real API: Ctrl-C
while it follows the job cancels the job on the server and exits with the signal's status."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import pytest

from models.job import JobStatus, RestorationJob
from tests.fixtures import images
from tests.fixtures.jwks import TokenFactory
from tests.fixtures.s3 import S3ServerHandle
from tests.fixtures.services import ApiServer

RESTORATION = str(Path(sys.executable).parent / "restoration")
# No worker runs in these tests: the job stays pending, so the command follows it until stopped.
LINE_WAIT = 30.0
EXIT_WAIT = 15.0


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "old.jpg"
    path.write_bytes(images.jpeg_bytes(320, 240))
    return path


async def start_submit(api: ApiServer, token: str, photo: Path, *flags: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        RESTORATION,
        "submit",
        str(photo),
        "--watch",
        *flags,
        "--url",
        api.url,
        "--token",
        token,
        cwd=photo.parent,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LOG_LEVEL": "WARNING"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def job_id_announced(process: asyncio.subprocess.Process) -> str:
    """The id from the command's first line, `job <id> pending`."""
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), LINE_WAIT)).decode()
    words = line.split()
    assert (words[0], words[2:]) == ("job", ["pending"]), line
    return words[1]


async def test_ctrl_c_while_watching_cancels_the_job_and_exits_with_the_signals_status(
    api: ApiServer, tokens: TokenFactory, s3_server: S3ServerHandle, photo: Path
) -> None:
    s3_server.reset()
    process = await start_submit(api, tokens.issue(sub=f"cli-{uuid.uuid4().hex[:8]}"), photo, "--cancel-on-interrupt")
    job_id = await job_id_announced(process)

    process.send_signal(signal.SIGINT)
    out, errors = await asyncio.wait_for(process.communicate(), EXIT_WAIT)

    assert process.returncode == 128 + signal.SIGINT, errors.decode()
    assert f"job {job_id} cancelled" in out.decode()
    assert (await RestorationJob.get(id=job_id)).status == JobStatus.CANCELLED


async def test_without_the_flag_ctrl_c_leaves_the_job_alone(
    api: ApiServer, tokens: TokenFactory, s3_server: S3ServerHandle, photo: Path
) -> None:
    s3_server.reset()
    process = await start_submit(api, tokens.issue(sub=f"cli-{uuid.uuid4().hex[:8]}"), photo)
    job_id = await job_id_announced(process)

    process.send_signal(signal.SIGINT)
    await asyncio.wait_for(process.communicate(), EXIT_WAIT)

    assert process.returncode == 128 + signal.SIGINT
    assert (await RestorationJob.get(id=job_id)).status == JobStatus.PENDING


async def announced_job(api: ApiServer, token: str, photo: Path, *flags: str) -> str:
    """Run the command until it has announced its job, then stop following (Ctrl-C, no cancel)."""
    process = await start_submit(api, token, photo, *flags)
    job_id = await job_id_announced(process)
    process.send_signal(signal.SIGINT)
    await asyncio.wait_for(process.communicate(), EXIT_WAIT)
    return job_id


async def test_running_the_same_command_again_gets_the_first_runs_job(
    api: ApiServer, tokens: TokenFactory, s3_server: S3ServerHandle, photo: Path
) -> None:
    s3_server.reset()
    user = f"cli-{uuid.uuid4().hex[:8]}"
    token = tokens.issue(sub=user)

    first = await announced_job(api, token, photo, "--denoise", "0.4")
    again = await announced_job(api, token, photo, "--denoise", "0.4")

    assert again == first
    assert await RestorationJob.filter(user_id=user).count() == 1


async def test_another_denoise_or_an_explicit_key_is_another_submit(
    api: ApiServer, tokens: TokenFactory, s3_server: S3ServerHandle, photo: Path
) -> None:
    s3_server.reset()
    user = f"cli-{uuid.uuid4().hex[:8]}"
    token = tokens.issue(sub=user)

    first = await announced_job(api, token, photo, "--denoise", "0.4")
    other_denoise = await announced_job(api, token, photo, "--denoise", "0.6")
    fresh_key = await announced_job(api, token, photo, "--denoise", "0.4", "--idempotency-key", uuid.uuid4().hex)

    assert len({first, other_denoise, fresh_key}) == 3
    assert await RestorationJob.filter(user_id=user).count() == 3
