"""`restoration dev`'s SQLite file takes the `cancelled` status without a migration (the status
column is a VARCHAR without a CHECK constraint), also in a file made by the first version."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.models.test_sqlite_upgrade import FIRST_VERSION_TABLE, OLD_JOB, PROJECT_ROOT

# Its own interpreter: opening SQLite re-initialises Tortoise for the whole process.
PROBE = """
import asyncio, json, sys, uuid
from models import repository
from models.db import close_database, open_database

async def main(url, job_id):
    await open_database(url)
    try:
        cancelled = await repository.cancel_job(uuid.UUID(job_id), "dev")
        again = await repository.cancel_job(uuid.UUID(job_id), "dev")
        status = await repository.job_status(job_id)
        print(json.dumps({"cancelled": cancelled.status, "again": again, "status": status, "seq": cancelled.seq}))
    finally:
        await close_database()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_a_processing_job_of_a_first_version_sqlite_file_can_be_cancelled_once(tmp_path: Path) -> None:
    path = tmp_path / "restoration.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(FIRST_VERSION_TABLE)
        db.execute(
            'INSERT INTO "restoration_jobs" (id, user_id, status, denoise, original_key, created_at, updated_at)'
            " VALUES (?, 'dev', 'processing', 0.5, 'originals/x.jpg', '2026-11-22 00:00:00', '2026-11-22 00:00:00')",
            (OLD_JOB,),
        )
    db.close()

    result = subprocess.run(
        [sys.executable, "-c", PROBE, f"sqlite://{path}", OLD_JOB],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"cancelled": "cancelled", "again": None, "status": "cancelled", "seq": 1}
    with sqlite3.connect(path) as db:
        [(status,)] = db.execute('SELECT status FROM "restoration_jobs"').fetchall()
    db.close()
    assert status == "cancelled"
