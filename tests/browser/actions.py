"""What a person does on the page, and what they then see, for the browser tests."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

from PIL import Image
from playwright.sync_api import Page, Request, expect

from tests.browser.conftest import DevServer, Recorded

# A restore in `restoration dev` takes the emulator's 3 s plus the pipeline, on a busy machine.
RESTORED_MS = 90_000
# A running job is cancelled within 5 s (contract), plus the event's way to the page.
CANCELLED_MS = 20_000
# The page's own threshold (api.js DIRECT_UPLOAD_BYTES): larger photos go straight to storage.
DIRECT_UPLOAD_BYTES = 4 * 1024 * 1024


def photo(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def large_jpeg() -> bytes:
    """Noise does not compress: a JPEG over the page's direct-upload threshold."""
    width, height = 2400, 1800
    noise = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    out = io.BytesIO()
    noise.save(out, "JPEG", quality=95)
    data = out.getvalue()
    assert len(data) > DIRECT_UPLOAD_BYTES
    return data


def operations(recorded: Recorded, field: str) -> list[Request]:
    """The page's GraphQL requests over HTTP that call `field` (e.g. `restoreUpload`)."""
    return [
        request
        for request in recorded.requests
        if request.url.endswith("/graphql") and f"{field}(".encode() in (request.post_data_buffer or b"")
    ]


def job_ids(server: DevServer) -> set[str]:
    """The ids of the dev identity's jobs (the latest 100), as another client sees them."""
    with server.api() as api:
        return {job["id"] for job in api.get("/api/v1/restoration/jobs", params={"limit": 100}).json()["jobs"]}


def signed_in(page: Page, server: DevServer, *, url: str | None = None) -> None:
    page.goto((url or server.url) + "/")
    expect(page.locator("#who")).to_have_text("Signed in with the dev identity")
    expect(page.locator("#submit")).to_be_visible()


def restore(page: Page, path: Path) -> str:
    """Chooses the photo, presses Restore, and returns the new job's id (from the history)."""
    page.set_input_files("#file", str(path))
    expect(page.locator("#restore")).to_be_enabled()
    page.click("#restore")
    current = page.locator("#history-list button.current")
    expect(current).to_have_count(1)
    job_id = current.locator("xpath=..").get_attribute("data-job-id")
    assert job_id
    return job_id


def expect_restored(page: Page, job_id: str) -> None:
    expect(page.locator("#job-status")).to_have_text("Restored", timeout=RESTORED_MS)
    after = page.locator("#after")
    expect(after).to_have_attribute("src", re.compile(rf"/files/restored/{job_id}\.png\?"))
    expect(after).to_have_js_property("complete", True)
    assert after.evaluate("image => image.naturalWidth") > 0  # decoded, not a broken image
    expect(page.locator("#download")).to_have_attribute("download", f"restored-{job_id}.png")
