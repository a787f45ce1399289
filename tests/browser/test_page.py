"""The page at `/` as a person uses it, in a real Chromium against `restoration dev`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.actions import (
    CANCELLED_MS,
    RESTORED_MS,
    expect_restored,
    job_ids,
    large_jpeg,
    operations,
    photo,
    restore,
    signed_in,
)
from tests.browser.conftest import DevServer, Recorded
from tests.fixtures import images

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_a_jpeg_is_restored_and_shown_before_and_after(page: Page, dev_server: DevServer, tmp_path: Path) -> None:
    signed_in(page, dev_server)
    job_id = restore(page, photo(tmp_path, "grandma.jpg", images.jpeg_bytes(640, 480)))
    expect_restored(page, job_id)
    before = page.locator("#before")
    expect(before).to_have_attribute("src", re.compile(rf"/files/originals/{job_id}\.jpg\?"))
    expect(before).to_have_js_property("complete", True)
    assert before.evaluate("image => image.naturalWidth") == 640
    # The slider moves the cut between the two images, from the keyboard too.
    page.focus("#compare-slider")
    page.keyboard.press("Home")
    assert page.locator("#before-clip").evaluate("clip => clip.style.getPropertyValue('--cut')") == "0%"


def test_a_heic_is_restored_and_its_result_shown(page: Page, dev_server: DevServer, tmp_path: Path) -> None:
    signed_in(page, dev_server)
    job_id = restore(page, photo(tmp_path, "IMG_0001.HEIC", images.heic_bytes(640, 480)))
    expect_restored(page, job_id)
    # Chromium cannot decode HEIC: the page says so instead of showing a broken original.
    expect(page.locator("#before-missing")).to_be_visible()


def test_a_large_photo_goes_straight_to_storage(
    page: Page, dev_server: DevServer, recorded: Recorded, tmp_path: Path
) -> None:
    signed_in(page, dev_server)
    data = large_jpeg()
    job_id = restore(page, photo(tmp_path, "scan.jpg", data))
    expect_restored(page, job_id)
    puts = [request for request in recorded.requests if request.method == "PUT"]
    assert len(puts) == 1
    assert "/files/uploads/" in puts[0].url
    assert puts[0].headers.get("authorization") is None  # the signed URL is the only credential
    assert len(operations(recorded, "restoreUpload")) == 1
    assert operations(recorded, "restoreImage") == []  # the bytes did not go through the API


def test_the_job_is_in_the_history_after_a_reload(page: Page, dev_server: DevServer, tmp_path: Path) -> None:
    signed_in(page, dev_server)
    job_id = restore(page, photo(tmp_path, "wedding.png", images.png_bytes(320, 240)))
    expect_restored(page, job_id)
    page.reload()
    entry = page.locator(f'#history-list li[data-job-id="{job_id}"]')
    expect(entry.locator(".badge")).to_have_text("done")
    expect(entry.locator("img.thumb")).to_have_attribute("src", re.compile(rf"/files/restored/{job_id}\.png\?"))
    # Newest first: the job just made heads the list.
    expect(page.locator("#history-list li").first).to_have_attribute("data-job-id", job_id)
    entry.locator("button").click()
    expect(page.locator("#job-status")).to_have_text("Restored")


def test_a_running_job_can_be_cancelled(page: Page, dev_server: DevServer, tmp_path: Path) -> None:
    dev_server.set_emulator_faults(service_time=120, times=1)  # long enough to be caught running
    try:
        signed_in(page, dev_server)
        job_id = restore(page, photo(tmp_path, "slow.jpg", images.jpeg_bytes(320, 240)))
        expect(page.locator("#job-status")).to_have_attribute("data-status", "PROCESSING", timeout=RESTORED_MS)
        page.click("#cancel")
        expect(page.locator("#job-status")).to_have_text("Cancelled", timeout=CANCELLED_MS)
        expect(page.locator("#cancel")).to_be_hidden()
        with dev_server.api() as api:
            assert api.get(f"/api/v1/restoration/jobs/{job_id}").json()["status"] == "cancelled"
    finally:
        dev_server.set_emulator_faults()
        dev_server.interrupt_emulator()  # whatever happened, the next test's job does not wait behind it


def test_a_text_file_named_jpg_shows_an_error_and_creates_no_job(
    page: Page, dev_server: DevServer, tmp_path: Path
) -> None:
    signed_in(page, dev_server)
    before = job_ids(dev_server)
    page.set_input_files("#file", str(photo(tmp_path, "holiday.jpg", b"Dear Ann, the weather is lovely.\n" * 40)))
    expect(page.locator("#submit-error")).to_contain_text("is not a photo the service can read")
    expect(page.locator("#restore")).to_be_disabled()
    # The jobs themselves (not their fresh signed URLs, nor an earlier test's job settling meanwhile).
    assert job_ids(dev_server) == before


def test_no_request_carries_the_token_in_its_url(
    page: Page, dev_server: DevServer, recorded: Recorded, tmp_path: Path
) -> None:
    with page.expect_response("**/web/dev-token") as issued:
        signed_in(page, dev_server)
    token = issued.value.json()["token"]
    job_id = restore(page, photo(tmp_path, "cat.webp", images.webp_bytes(320, 240)))
    expect_restored(page, job_id)
    urls = [request.url for request in recorded.requests] + [socket.url for socket in recorded.websockets]
    assert [url for url in urls if token in url] == []
    # The token does travel, in headers: the check above looked where it would have been.
    assert any(request.headers.get("authorization") == f"Bearer {token}" for request in recorded.requests)
    assert any(socket.url.endswith("/graphql") for socket in recorded.websockets)


def test_the_page_fits_a_phone_screen(phone: Page, dev_server: DevServer, tmp_path: Path) -> None:
    signed_in(phone, dev_server)
    job_id = restore(phone, photo(tmp_path, "small.jpg", images.jpeg_bytes(640, 480)))
    expect_restored(phone, job_id)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390


def test_everything_is_reachable_from_the_keyboard(page: Page, dev_server: DevServer) -> None:
    signed_in(page, dev_server)
    reached = []
    for _ in range(12):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id"))
    assert reached.index("file") < reached.index("denoise") < reached.index("denoise-reset")
    page.focus("#denoise")
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#denoise-value")).to_have_text("0.95")


def test_a_failed_job_shows_its_message_and_is_retried_when_retryable(
    page: Page, dev_server: DevServer, tmp_path: Path
) -> None:
    dev_server.set_emulator_faults(
        mode="execution_error", exception_type="torch.OutOfMemoryError", message="CUDA out of memory", times=1
    )
    try:
        signed_in(page, dev_server)
        failed_id = restore(page, photo(tmp_path, "attic.jpg", images.jpeg_bytes(320, 240)))
        expect(page.locator("#job-status")).to_have_text("The restoration failed", timeout=RESTORED_MS)
        expect(page.locator("#job-error")).to_contain_text("out of memory")
        page.click("#retry")
        retried = page.locator("#history-list button.current").locator("xpath=..")
        expect(retried).not_to_have_attribute("data-job-id", failed_id)
        retried_id = retried.get_attribute("data-job-id")
        assert retried_id
        expect_restored(page, retried_id)
    finally:
        dev_server.set_emulator_faults()


def test_a_dropped_photo_is_chosen(page: Page, dev_server: DevServer) -> None:
    signed_in(page, dev_server)
    dropped = page.evaluate_handle(
        """bytes => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], "dropped.jpg", {type: "image/jpeg"}));
            return transfer;
        }""",
        list(images.jpeg_bytes(64, 48)),
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})
    expect(page.locator("#chosen-name")).to_have_text("dropped.jpg")
    expect(page.locator("#chosen-preview")).to_be_visible()
    expect(page.locator("#restore")).to_be_enabled()


def test_the_history_shows_a_job_submitted_elsewhere_as_it_happens(page: Page, dev_server: DevServer) -> None:
    signed_in(page, dev_server)
    # Live: the socket is acknowledged, and the page's subscriptions go out with the acknowledgement.
    expect(page.locator("#history")).to_have_attribute("data-live", "connected")
    with dev_server.api() as api:
        response = api.post(
            "/api/v1/restoration/restore", files={"file": ("phone.jpg", images.jpeg_bytes(320, 240), "image/jpeg")}
        )
    assert response.status_code == 202, response.text
    entry = page.locator(f'#history-list li[data-job-id="{response.json()["id"]}"]')
    expect(entry.locator(".badge")).to_have_text("done", timeout=RESTORED_MS)
