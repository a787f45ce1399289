"""The event loop's cost of minting a page of job views with CloudFront signing.

Run by hand: `.venv/bin/python tests/bench/url_signing.py [--jobs 100 --rounds 20]`.
Builds `view_of` for a page of completed jobs (two signed URLs each: original and result) the way
`list_jobs` does, on the event loop, and reports per page: the first build (every URL new) and a
rebuild within the reuse window (what aliased or repeated pages cost); then the longest stall a
ticker on the loop sees while new pages are built in a thread instead.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gql.views import view_of
from storage.urls import ImageUrls


@dataclass(frozen=True)
class Row:
    id: uuid.UUID
    status: str
    denoise: float
    original_key: str
    processed_key: str | None
    error_message: str | None
    error_code: str | None
    retryable: bool | None
    progress: float | None
    created_at: datetime
    updated_at: datetime


def completed_rows(count: int) -> list[Row]:
    now = datetime.now(UTC)
    rows = []
    for _ in range(count):
        job = uuid.uuid4()
        rows.append(
            Row(job, "completed", 0.5, f"originals/{job}.jpg", f"restored/{job}.png", None, None, None, None, now, now)
        )
    return rows


def signing_urls() -> ImageUrls:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ImageUrls(
        ttl_seconds=3600, cloudfront_domain="d1234.cloudfront.net", cloudfront_key_id="K2JCJMDEHXQW5F",
        cloudfront_private_key_pem=pem,
    )  # fmt: skip


def page_ms(rows: list[Row], urls: ImageUrls) -> float:
    started = time.perf_counter()
    for row in rows:
        view_of(row, urls)
    return (time.perf_counter() - started) * 1000


async def worst_stall_ms(pages: list[list[Row]], urls: ImageUrls) -> float:
    """The longest gap a 1 ms ticker on the loop sees while the pages are built in a thread
    (`asyncio.to_thread`), one after the other: whether signing holds the GIL."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append((now - last) * 1000)
            last = now

    task = asyncio.create_task(ticker())
    for rows in pages:
        await asyncio.to_thread(page_ms, rows, urls)
    done.set()
    await task
    return max(gaps)


async def main(jobs: int, rounds: int) -> None:
    urls = signing_urls()
    pages = [completed_rows(jobs) for _ in range(rounds)]
    first = [page_ms(rows, urls) for rows in pages]
    again = [page_ms(rows, urls) for rows in pages]
    threaded = await worst_stall_ms([completed_rows(jobs) for _ in range(rounds)], urls)
    print(f"{jobs}-job page, {2 * jobs} CloudFront-signed URLs, {rounds} pages")  # noqa: T201
    print(f"  on the loop, new URLs:             median {statistics.median(first):6.1f} ms, max {max(first):6.1f} ms")  # noqa: T201
    print(f"  on the loop, same keys again:      median {statistics.median(again):6.1f} ms, max {max(again):6.1f} ms")  # noqa: T201
    print(f"  in a thread, new URLs: longest loop stall {threaded:6.1f} ms")  # noqa: T201


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=20)
    options = parser.parse_args()
    asyncio.run(main(options.jobs, options.rounds))
