"""The README's screenshots of the page, desktop (1280 wide) and phone (390 wide), in Chromium.

Run by hand, never by pytest: `.venv/bin/python tests/browser/screenshots.py`. It starts a fresh
`restoration dev` in a temporary directory, restores a few made-up old photos through the page,
then slows the emulator down so that jobs are caught in progress: the desktop shows a restored
photo against its original with a job still restoring in the history, the phone a job waiting its
turn behind two others. It writes gql/web/screenshots/desktop.jpg and phone.jpg (JPEG: the
photos in them are grainy on purpose, and PNG would be ten times the size).
"""

from __future__ import annotations

import io
import random
import re
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageOps

PROJECT_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT_ROOT))

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

from tests.browser.conftest import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    PHONE,
    DevServer,
    start_dev,
    stop_dev,
)

OUT = PROJECT_ROOT / "gql" / "web" / "screenshots"
RESTORED_MS = 120_000
SCREENSHOT_QUALITY = 85
# Seconds the emulator takes for a job caught in progress: far longer than taking the pictures.
IN_PROGRESS_SECONDS = 600


def old_photo(seed: int, size: tuple[int, int] = (900, 640)) -> bytes:
    """A made-up faded, scratched, grainy sepia landscape (no real person's photo in the repository)."""
    rng = random.Random(seed)
    width, height = size
    image = Image.new("L", size)
    draw = ImageDraw.Draw(image)
    for y in range(height):  # sky to ground
        draw.line([(0, y), (width, y)], fill=int(200 - 90 * y / height))
    for _ in range(3):  # hills
        base = rng.randint(height // 2, height - 80)
        left = rng.randint(-300, width // 2 - 100)
        draw.ellipse([left, base, left + rng.randint(500, 1100), base + 500], fill=rng.randint(60, 110))
    sun = rng.randint(100, width - 100)
    draw.ellipse([sun - 45, 90, sun + 45, 180], fill=235)
    for _ in range(5):  # trees
        x = rng.randint(0, width)
        draw.polygon([(x, height - 260), (x - 40, height - 60), (x + 40, height - 60)], fill=40)
    grain = Image.effect_noise(size, 40)
    image = Image.blend(image, grain, 0.25).filter(ImageFilter.GaussianBlur(1.2))
    draw = ImageDraw.Draw(image)
    for _ in range(14):  # scratches and dust
        x = rng.randint(0, width)
        draw.line([(x, 0), (x + rng.randint(-60, 60), height)], fill=rng.choice((20, 245)), width=1)
    sepia = ImageOps.colorize(ImageOps.autocontrast(image, cutoff=8), black="#2b1d0e", white="#f1e4c8")
    out = io.BytesIO()
    sepia.save(out, "JPEG", quality=80)
    return out.getvalue()


def open_page(page: Page, url: str) -> None:
    page.goto(url + "/")
    expect(page.locator("#submit")).to_be_visible()  # signed in, the photo input listens


def restore(page: Page, path: Path) -> None:
    page.set_input_files("#file", str(path))
    page.click("#restore")
    expect(page.locator("#job-status")).to_have_text("Restored", timeout=RESTORED_MS)


def submit_elsewhere(server: DevServer, data: bytes) -> str:
    """A photo sent by another client of the same identity (it shows up in the page's history)."""
    with server.api() as api:
        response = api.post("/api/v1/restoration/restore", files={"file": ("scan.jpg", data, "image/jpeg")})
        response.raise_for_status()
        return str(response.json()["id"])


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="restoration-screens-") as tmp:
        workdir = Path(tmp)
        photos = []
        for seed in range(4):
            path = workdir / f"old-{seed}.jpg"
            path.write_bytes(old_photo(seed))
            photos.append(path)
        server = start_dev(workdir)
        slow: list[str] = []
        try:
            with sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport=DESKTOP)  # type: ignore[arg-type]
                open_page(page, server.url)
                for path in photos[:3]:
                    restore(page, path)
                page.locator("#compare-slider").fill("45")
                server.set_emulator_faults(service_time=IN_PROGRESS_SECONDS, times=3)
                slow.append(submit_elsewhere(server, photos[3].read_bytes()))
                expect(page.locator(f'#history-list li[data-job-id="{slow[0]}"] .badge')).to_have_text("restoring")
                page.screenshot(path=OUT / "desktop.jpg", full_page=True, quality=SCREENSHOT_QUALITY)
                slow.append(submit_elsewhere(server, photos[1].read_bytes()))  # both slots busy now
                phone = browser.new_page(viewport=PHONE)  # type: ignore[arg-type]
                open_page(phone, server.url)
                phone.set_input_files("#file", str(photos[2]))
                phone.click("#restore")
                expect(phone.locator("#job-status")).to_have_text(re.compile(r"^1st in line"), timeout=RESTORED_MS)
                waiting = phone.locator("#history-list button.current").locator("xpath=..").get_attribute("data-job-id")
                slow.append(str(waiting))
                phone.screenshot(path=OUT / "phone.jpg", full_page=True, quality=SCREENSHOT_QUALITY)
                browser.close()
        finally:
            server.set_emulator_faults()
            with server.api() as api:
                for job_id in slow:  # so the dev server stops at once
                    api.post(f"/api/v1/restoration/jobs/{job_id}/cancel")
            stop_dev(server)
    print(f"wrote {OUT / 'desktop.jpg'} and {OUT / 'phone.jpg'}")  # noqa: T201 - a script for a person


if __name__ == "__main__":
    main()
