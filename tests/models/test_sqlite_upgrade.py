"""`restoration dev` keeps its SQLite file across versions: columns added since the file was made
are added in place, so an old `.data/restoration.sqlite3` keeps working (and keeps its jobs)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# The table as the first version of `restoration dev` made it: free-form error_kind, no seq, no
# error_code or retryable.
FIRST_VERSION_TABLE = """
CREATE TABLE "restoration_jobs" (
    "id" CHAR(36) NOT NULL PRIMARY KEY,
    "user_id" VARCHAR(255) NOT NULL,
    "status" VARCHAR(16) NOT NULL,
    "denoise" REAL NOT NULL,
    "original_key" VARCHAR(255) NOT NULL,
    "processed_key" VARCHAR(255),
    "error_message" TEXT,
    "error_kind" VARCHAR(32),
    "progress" REAL,
    "worker_id" VARCHAR(64),
    "lease_expires_at" TIMESTAMP,
    "started_at" TIMESTAMP,
    "finished_at" TIMESTAMP,
    "created_at" TIMESTAMP NOT NULL,
    "updated_at" TIMESTAMP NOT NULL
);
"""
OLD_JOB = "6f1d0c1e-0000-4000-8000-000000000001"

# Runs in its own interpreter: opening SQLite re-initialises Tortoise for the whole process.
PROBE = """
import asyncio, json, sys
from models import repository
from models.db import close_database, open_database
from models.error_codes import ErrorCode

async def main(url, job_id):
    await open_database(url)
    try:
        failed = await repository.fail_job(job_id, message="boom", code=ErrorCode.TIMEOUT, retryable=True)
        print(json.dumps({"status": failed.status, "code": failed.error_code, "retryable": failed.retryable,
                          "seq": failed.seq}))
    finally:
        await close_database()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_an_sqlite_file_of_the_first_version_gets_the_new_columns_and_keeps_its_jobs(tmp_path: Path) -> None:
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
    assert json.loads(result.stdout) == {"status": "failed", "code": "TIMEOUT", "retryable": True, "seq": 1}
    with sqlite3.connect(path) as db:
        columns = {row[1] for row in db.execute('PRAGMA table_info("restoration_jobs")')}
    db.close()
    assert {"seq", "error_code", "retryable"} <= columns
