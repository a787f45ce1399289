"""The page on a network that drops a submit's answer, and opened by another loopback name than
the printed one, in a real Chromium against `restoration dev`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, Request, Route

from tests.browser.actions import expect_restored, job_ids, large_jpeg, operations, photo, restore, signed_in
from tests.browser.conftest import DevServer, Recorded
from tests.fixtures import images

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

KEY_IN_BODY = re.compile(rb'"idempotencyKey"\s*:\s*("[^"]*")')


def idempotency_key(request: Request) -> str | None:
    found = KEY_IN_BODY.search(request.post_data_buffer or b"")
    return json.loads(found.group(1)) if found else None


def lose_the_first_answer_to(page: Page, recorded: Recorded, field: str) -> list[int]:
    """Let the first request calling `field` reach the server, then cut the connection before its
    answer reaches the page (as a dropped mobile connection does); returns the lost answers' statuses."""
    lost: list[int] = []

    def handle(route: Route) -> None:
        if lost or f"{field}(".encode() not in (route.request.post_data_buffer or b""):
            route.fallback()
            return
        lost.append(route.fetch().status)
        route.abort("connectionreset")

    page.route("**/graphql", handle)
    recorded.expect_console_error(r"net::ERR_CONNECTION_RESET")
    return lost


def test_a_submit_whose_answer_was_lost_is_sent_again_and_makes_one_job(
    page: Page, dev_server: DevServer, recorded: Recorded, tmp_path: Path
) -> None:
    signed_in(page, dev_server)
    before = job_ids(dev_server)
    lost = lose_the_first_answer_to(page, recorded, "restoreImage")
    job_id = restore(page, photo(tmp_path, "flaky.jpg", images.jpeg_bytes(320, 240)))
    expect_restored(page, job_id)
    assert lost == [200]  # the server did make the job the first time
    sent = operations(recorded, "restoreImage")
    assert len(sent) == 2
    keys = {idempotency_key(request) for request in sent}
    assert len(keys) == 1
    assert None not in keys
    assert job_ids(dev_server) - before == {job_id}


def test_a_direct_upload_whose_restore_answer_was_lost_makes_one_job(
    page: Page, dev_server: DevServer, recorded: Recorded, tmp_path: Path
) -> None:
    signed_in(page, dev_server)
    before = job_ids(dev_server)
    lost = lose_the_first_answer_to(page, recorded, "restoreUpload")
    job_id = restore(page, photo(tmp_path, "flaky-scan.jpg", large_jpeg()))
    expect_restored(page, job_id)
    assert lost == [200]
    sent = operations(recorded, "restoreUpload")
    assert len(sent) == 2
    assert len({idempotency_key(request) for request in sent} - {None}) == 1
    assert job_ids(dev_server) - before == {job_id}


def test_the_same_photo_restored_twice_is_two_jobs(page: Page, dev_server: DevServer, tmp_path: Path) -> None:
    """Each press of Restore has its own idempotency key: the server replays none of them."""
    signed_in(page, dev_server)
    first = restore(page, photo(tmp_path, "twice.jpg", images.jpeg_bytes(320, 240)))
    expect_restored(page, first)
    page.click("#restore")  # the same photo and denoise again, on purpose
    second = current_job(page, other_than=first)
    expect_restored(page, second)
    assert {first, second} <= job_ids(dev_server)


def current_job(page: Page, *, other_than: str) -> str:
    current = page.locator(f'#history-list li:not([data-job-id="{other_than}"]) button.current')
    current.wait_for()
    job_id = current.locator("xpath=..").get_attribute("data-job-id")
    assert job_id
    return job_id


def test_a_page_opened_as_localhost_sends_a_large_photo_straight_to_storage(
    page: Page, dev_server: DevServer, recorded: Recorded, tmp_path: Path
) -> None:
    localhost = dev_server.url.replace("//127.0.0.1:", "//localhost:")
    assert localhost != dev_server.url
    signed_in(page, dev_server, url=localhost)
    job_id = restore(page, photo(tmp_path, "scan.jpg", large_jpeg()))
    expect_restored(page, job_id)
    [put] = [request for request in recorded.requests if request.method == "PUT"]
    # Another origin than the page's: the printed one, under which storage signs its URLs.
    assert put.url.startswith(f"{dev_server.url}/files/uploads/")
    assert page.url.startswith(localhost)
