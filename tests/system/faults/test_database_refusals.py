"""A PostgreSQL that is reachable but refuses the write (read-only, out of connections): every
submit is a 503 with Retry-After (GraphQL: SERVICE_UNAVAILABLE), never a 500; the stored original
is removed, no job row and no queued message stay, no spool file stays open; once the database
takes writes again the same processes carry on (a submit completes, the worker takes it).

Real refusals, no doubles of our database: `default_transaction_read_only` on the test's own
database, and a role whose CONNECTION LIMIT the test fills itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import random
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from PIL import Image

from gql.devserver import EMULATOR_SERVICE_TIME
from tests.fixtures.comfy import ComfyEmulatorHandle
from tests.fixtures.proxy import free_port
from tests.fixtures.s3 import S3ServerHandle
from tests.fixtures.services import PG_HOST, PG_PORT, PG_USER
from tests.gql.helpers import graphql_upload
from tests.system.e2e.test_dev import DevServer, newcomer_env, start_dev, stop
from tests.system.faults.harness import (
    POLL,
    Cluster,
    Process,
    Rows,
    comfy_running,
    post_photo,
    queue_of,
    read_job,
    submit,
    wait_terminal,
)

JOB = "query($id: ID!) { job(id: $id) { id status } }"


def large_photo() -> bytes:
    """A JPEG over Starlette's 1 MiB in-memory spool, so the upload goes through a file on disk."""
    rng = random.Random(12)
    image = Image.frombytes("RGB", (1200, 900), rng.randbytes(1200 * 900 * 3))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95)
    assert out.tell() > 1024 * 1024
    return out.getvalue()


async def admin(database: str = "test") -> asyncpg.Connection:
    return await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=database)


async def drop_connections(database: str) -> None:
    """End every backend on `database`, so the API's pool reconnects (and sees new settings)."""
    connection = await admin()
    try:
        await connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    finally:
        await connection.close()


def open_spool_files(process: Process, spool: Path) -> list[str]:
    """The API process's open files in its spool directory (deleted ones included)."""
    found = []
    for fd in Path(f"/proc/{process.pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(spool)):
            found.append(target)
    return found


def files_in(folder: Path) -> list[str]:
    """Names of every file under `folder`, at any depth."""
    return [path.name for path in folder.rglob("*") if path.is_file()]


async def assert_refused(client: httpx.AsyncClient, photo: bytes) -> None:
    rest = await post_photo(client, photo)
    assert rest.status_code == 503, rest.text
    assert rest.json() == {"detail": "database unavailable, please retry shortly"}
    assert int(rest.headers["retry-after"]) > 0
    gql = await graphql_upload(client, photo)
    assert gql.status_code == 200, gql.text
    [error] = gql.json()["errors"]
    assert error["extensions"] == {"code": "SERVICE_UNAVAILABLE"}, error


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    path = tmp_path / "spool"
    path.mkdir()
    return path


async def test_a_read_only_database_refuses_submits_with_503_and_nothing_stays_behind(
    cluster: Cluster, fresh_database: str, rows: Rows, s3_server: S3ServerHandle, spool: Path, client_factory
) -> None:
    api = await cluster.start_api(TMPDIR=str(spool))
    await cluster.start_worker()
    client = client_factory(cluster.api_url)
    before, _ = await wait_terminal(client, await submit(client), within=15)
    assert before["status"] == "completed", cluster.logs()
    objects, jobs = s3_server.keys(), await rows.count()
    photo = large_photo()

    connection = await admin()
    await connection.execute(f'ALTER DATABASE "{fresh_database}" SET default_transaction_read_only = on')
    try:
        await drop_connections(fresh_database)
        # Reads still work: the refusals below are the database refusing to write, not a lost link.
        for _ in range(3):  # the first reads may meet a terminated pooled connection (also a 503)
            read = await client.get(f"/api/v1/restoration/jobs/{before['id']}")
        assert read.status_code == 200, read.text
        await assert_refused(client, photo)
        await assert_refused(client, photo)
    finally:
        await connection.execute(f'ALTER DATABASE "{fresh_database}" RESET default_transaction_read_only')
        await connection.close()

    assert s3_server.keys() == objects  # every refused original was removed
    assert await rows.count() == jobs
    assert queue_of(cluster.env["REDIS_URL"]).pending_count() == 0
    assert open_spool_files(api, spool) == []
    assert files_in(spool) == []
    assert "Traceback" not in api.log(), api.log()[-3000:]

    await drop_connections(fresh_database)  # new connections take writes again
    after = await submit_when_accepted(client)
    done, _ = await wait_terminal(client, after, within=20)
    assert done["status"] == "completed", (done, cluster.logs())


async def submit_when_accepted(client: httpx.AsyncClient, *, attempts: int = 5) -> str:
    """Submit; a 503 from a pooled connection the test terminated is retried, as a client would."""
    for _ in range(attempts):
        response = await post_photo(client)
        if response.status_code == 202:
            return str(response.json()["id"])
        assert response.status_code == 503, response.text
    raise AssertionError(f"still refused after {attempts} attempts: {response.text}")


@pytest.fixture
async def limited_role(fresh_database: str) -> AsyncIterator[str]:
    """A login role with CONNECTION LIMIT 2 and the rights the API needs on the test's database."""
    role = f"restoration_limited_{uuid.uuid4().hex[:8]}"
    connection = await admin()
    await connection.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 2')
    database = await admin(fresh_database)
    await database.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"')
    await database.execute(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
    await database.close()
    try:
        yield role
    finally:
        await drop_connections(fresh_database)
        await connection.execute(f'DROP DATABASE IF EXISTS "{fresh_database}" WITH (FORCE)')
        await connection.execute(f'DROP ROLE IF EXISTS "{role}"')
        await connection.close()


async def take_every_connection(role: str, database: str, *, limit: int) -> list[asyncpg.Connection]:
    """All `limit` connections the role may have, held by the test (the API's are terminated)."""
    held: list[asyncpg.Connection] = []
    connection = await admin()
    try:
        for _ in range(50):
            if len(held) == limit:
                return held
            await connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND NOT pid = ANY($2)",
                role,
                [c.get_server_pid() for c in held],
            )
            with contextlib.suppress(asyncpg.TooManyConnectionsError):
                held.append(await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=role, database=database))
    finally:
        await connection.close()
    raise AssertionError(f"could not take the {limit} connections of {role}")


async def test_a_database_out_of_connections_refuses_submits_with_503_and_serves_once_they_free_up(
    cluster: Cluster,
    fresh_database: str,
    limited_role: str,
    rows: Rows,
    s3_server: S3ServerHandle,
    spool: Path,
    client_factory,
) -> None:
    url = f"postgres://{limited_role}@{PG_HOST}:{PG_PORT}/{fresh_database}"
    api = await cluster.start_api(DATABASE_URL=url, TMPDIR=str(spool))
    await cluster.start_worker()  # as the test's superuser: the limit is the API's
    client = client_factory(cluster.api_url)
    before, _ = await wait_terminal(client, await submit(client), within=15)
    assert before["status"] == "completed", cluster.logs()
    objects, jobs = s3_server.keys(), await rows.count()
    photo = large_photo()

    held = await take_every_connection(limited_role, fresh_database, limit=2)
    try:
        with pytest.raises(asyncpg.TooManyConnectionsError):  # the limit is real
            await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=limited_role, database=fresh_database)
        await assert_refused(client, photo)
        await assert_refused(client, photo)
    finally:
        for connection in held:
            await connection.close()

    assert s3_server.keys() == objects
    assert await rows.count() == jobs
    assert queue_of(cluster.env["REDIS_URL"]).pending_count() == 0
    assert open_spool_files(api, spool) == []
    assert files_in(spool) == []
    assert "Traceback" not in api.log(), api.log()[-3000:]

    done, _ = await wait_terminal(client, await submit(client), within=20)
    assert done["status"] == "completed", (done, cluster.logs())


# -- restoration dev: the SQLite file locked by another writer ------------------------------------


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevServer]:
    env = newcomer_env(tmp_path, WORKER_LEASE_SECONDS="3", RECONCILE_INTERVAL_SECONDS="0.5")
    server = start_dev(tmp_path, "--port", str(free_port()), env=env)
    yield server
    stop(server.process)


@contextlib.contextmanager
def locked(database: Path) -> Iterator[None]:
    """Another process's writer holding the SQLite file (`BEGIN EXCLUSIVE`) until the block ends."""
    connection = sqlite3.connect(database, timeout=30, isolation_level=None)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        yield
        connection.execute("ROLLBACK")
    finally:
        connection.close()


def originals(server: DevServer) -> set[str]:
    folder = server.workdir / ".data" / "objects" / "originals"
    return {path.name for path in folder.iterdir()} if folder.exists() else set()


async def running_in_comfyui(client: httpx.AsyncClient, job_id: str, *, within: float) -> None:
    """Until the job reports progress: its prompt runs in ComfyUI, so the worker's writes before
    sending it (the claim, the server it went to) are behind it and its next write is the end."""
    deadline = asyncio.get_running_loop().time() + within
    while (job := await read_job(client, job_id))["progress"] is None:
        assert job["status"] in ("pending", "processing"), job
        assert asyncio.get_running_loop().time() < deadline, f"job {job_id} never ran in ComfyUI: {job}"
        await asyncio.sleep(POLL)


async def test_dev_answers_503_while_its_database_is_locked_and_its_worker_carries_on(dev: DevServer) -> None:
    database = dev.workdir / ".data" / "restoration.sqlite3"
    async with httpx.AsyncClient(
        base_url=dev.url, headers={"Authorization": f"Bearer {dev.token}"}, timeout=60
    ) as client:
        first, _ = await wait_terminal(client, await submit(client), within=30)
        assert first["status"] == "completed", first
        stored = originals(dev)

        with locked(database):
            await assert_refused(client, large_photo())
        assert originals(dev) == stored  # the refused originals were removed
        assert [name for name in files_in(dev.workdir / ".data" / "objects") if name.startswith("tmp")] == []

        # A job whose completion meets the lock: left for the reconciler, settled once it lifts.
        stuck = await submit(client)
        await running_in_comfyui(client, stuck, within=15)  # past every write before the prompt is sent
        with locked(database):
            # It finishes in ComfyUI; its completion waits out SQLite's busy timeout and is refused.
            await logged(dev, "restore.unsettled", within=EMULATOR_SERVICE_TIME + 30)
        settled, _ = await wait_terminal(client, stuck, within=30)
        assert settled["status"] in ("completed", "failed"), settled

        # ...and the embedded worker still takes jobs.
        later, _ = await wait_terminal(client, await submit(client), within=30)
        assert later["status"] == "completed", (later, (dev.workdir / "dev.log").read_text()[-3000:])
    assert dev.process.poll() is None


async def logged(server: DevServer, event: str, *, within: float) -> None:
    """Until `event` is in the dev server's log."""
    log = server.workdir / "dev.log"
    deadline = asyncio.get_running_loop().time() + within
    while event not in log.read_text():
        assert asyncio.get_running_loop().time() < deadline, f"no {event} in {within}s: {log.read_text()[-3000:]}"
        await asyncio.sleep(POLL)


async def test_a_worker_whose_job_write_is_refused_leaves_it_to_the_reconciler_and_takes_the_next(
    cluster: Cluster, fresh_database: str, comfy: ComfyEmulatorHandle, client_factory
) -> None:
    await comfy.set_faults(service_time=3.0)
    await cluster.start_api()
    worker = await cluster.start_worker()
    client = client_factory(cluster.api_url)
    stuck = await submit(client)
    await comfy_running(comfy, stuck)

    connection = await admin()
    await connection.execute(f'ALTER DATABASE "{fresh_database}" SET default_transaction_read_only = on')
    try:
        await drop_connections(fresh_database)
        await wait_for_log(worker, "restore.unsettled", within=20)  # its completion was refused
    finally:
        await connection.execute(f'ALTER DATABASE "{fresh_database}" RESET default_transaction_read_only')
        await connection.close()
    await drop_connections(fresh_database)
    await until_served(client, stuck)

    settled, _ = await wait_terminal(client, stuck, within=30)  # the reconciler, from ComfyUI's record
    assert settled["status"] == "completed", (settled, cluster.logs())
    later, _ = await wait_terminal(client, await submit_when_accepted(client), within=30)
    assert later["status"] == "completed", (later, cluster.logs())
    assert worker.alive


async def until_served(client: httpx.AsyncClient, job_id: str, *, attempts: int = 10) -> None:
    """Read the job until the API's pool has replaced the connections the test terminated (each
    such connection answers one 503 first)."""
    for _ in range(attempts):
        if (await client.get(f"/api/v1/restoration/jobs/{job_id}")).status_code == 200:
            return
    raise AssertionError(f"the API still answers 503 after {attempts} reads")


async def wait_for_log(process: Process, text: str, *, within: float) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while text not in process.log():
        assert asyncio.get_running_loop().time() < deadline, f"no {text!r} in:\n{process.log()[-3000:]}"
        await asyncio.sleep(0.05)
