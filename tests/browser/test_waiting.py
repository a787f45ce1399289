"""A job waiting its turn, as the page shows it: its place in line and the time left (the server's
`queuePosition` and `etaSeconds`), in a real Chromium against `restoration dev`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.actions import RESTORED_MS, photo, restore, signed_in
from tests.browser.conftest import DevServer
from tests.fixtures import images

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

# Long enough that the jobs ahead are still running whenever the page's job is looked at.
BLOCKING_SECONDS = 300
# `restoration dev`: one emulator holding COMFYUI_MAX_INFLIGHT (2) of our prompts; a third job waits.
SLOTS = 2


@pytest.fixture
def busy_engine(dev_server: DevServer) -> Iterator[list[str]]:
    """SLOTS + 1 jobs submitted by another client, held by a slow engine: two fill the slots, one waits.
    Yields their ids; afterwards they are cancelled and the engine is quick again."""
    dev_server.set_emulator_faults(service_time=BLOCKING_SECONDS, times=SLOTS + 2)
    ahead: list[str] = []
    try:
        with dev_server.api() as api:
            for n in range(SLOTS + 1):
                response = api.post(
                    "/api/v1/restoration/restore",
                    files={"file": (f"ahead-{n}.jpg", images.jpeg_bytes(160, 120), "image/jpeg")},
                )
                assert response.status_code == 202, response.text
                ahead.append(response.json()["id"])
        yield ahead
    finally:
        dev_server.set_emulator_faults()
        with dev_server.api() as api:
            for job_id in ahead:
                api.post(f"/api/v1/restoration/jobs/{job_id}/cancel")  # 409 when already over: fine


def test_a_job_behind_others_shows_its_place_in_line_and_moves_up(
    page: Page, dev_server: DevServer, busy_engine: list[str], tmp_path: Path
) -> None:
    signed_in(page, dev_server)
    job_id = restore(page, photo(tmp_path, "patient.jpg", images.jpeg_bytes(320, 240)))
    status = page.locator("#job-status")
    expect(status).to_have_attribute("data-status", "PENDING")
    # Behind the one job of the three that is not in a slot (never mind how far the others got).
    expect(status).to_have_text(re.compile(r"^2nd in line( · about \d+ (s|min))?$"), timeout=RESTORED_MS)
    with dev_server.api() as api:
        [waiting] = [job for job in busy_engine if api.get(f"/api/v1/restoration/jobs/{job}").json()["queue_position"]]
        api.post(f"/api/v1/restoration/jobs/{waiting}/cancel").raise_for_status()  # the one ahead leaves the line
    expect(status).to_have_text(re.compile(r"^1st in line( · about \d+ (s|min))?$"), timeout=RESTORED_MS)
    with dev_server.api() as api:
        assert api.get(f"/api/v1/restoration/jobs/{job_id}").json()["queue_position"] == 1
        api.post(f"/api/v1/restoration/jobs/{job_id}/cancel").raise_for_status()
    expect(status).to_have_text("Cancelled")


def test_the_words_for_a_job_name_its_place_and_the_time_left(page: Page, dev_server: DevServer) -> None:
    signed_in(page, dev_server)
    jobs = [
        {"status": "PENDING", "queuePosition": 3, "etaSeconds": 40.2},
        {"status": "PENDING", "queuePosition": 1, "etaSeconds": None},
        {"status": "PENDING", "queuePosition": 22, "etaSeconds": 150},
        {"status": "PENDING", "queuePosition": 13, "etaSeconds": 0.2},
        {"status": "PENDING", "queuePosition": None, "etaSeconds": None},
        {"status": "PROCESSING", "progress": 0.454, "etaSeconds": 12},
        {"status": "PROCESSING", "progress": None, "etaSeconds": None},
        {"status": "COMPLETED"},
    ]
    words = page.evaluate(
        "async (jobs) => { const { statusText } = await import('/web/status.js'); return jobs.map(statusText); }", jobs
    )
    assert words == [
        "3rd in line · about 40 s",
        "1st in line",
        "22nd in line · about 3 min",
        "13th in line · about 1 s",
        "Waiting in line",
        "Restoring · 45 % · about 12 s",
        "Restoring",
        "Restored",
    ]
