"""The web page in a real headless Chromium (Debian's `chromium`, driven by Playwright for Python)
against a real `restoration dev` process started as a newcomer starts it.

`.ci/run` (through `make test`) installs Chromium when /usr/bin/chromium is missing; Playwright's
own browser downloads are never used. Every page a test opens records its requests, websockets and
console errors; a console error or an uncaught exception fails the test that caused it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, Request, WebSocket, sync_playwright

from tests.fixtures.proxy import free_port

RESTORATION = str(Path(sys.executable).parent / "restoration")
CHROMIUM = "/usr/bin/chromium"
# No sandbox (containers), nothing that reaches the internet by itself (QUIC, component updates, sync).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
BANNER_COMFYUI = re.compile(r"^\s+ComfyUI\s+(\S+)$", re.MULTILINE)
# A cold start imports everything and starts the emulator and the embedded Redis.
START_SECONDS = 60


@dataclass
class DevServer:
    process: subprocess.Popen[bytes]
    workdir: Path
    url: str
    comfyui_url: str
    token: str

    def api(self) -> httpx.Client:
        """The public API as another client of the same dev identity sees it."""
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def set_emulator_faults(self, **faults: object) -> None:
        httpx.post(f"{self.comfyui_url}/_emulator/faults", json=faults, timeout=10).raise_for_status()

    def interrupt_emulator(self) -> None:
        """Stop the prompt the emulator is running (ComfyUI's own `/interrupt`)."""
        httpx.post(f"{self.comfyui_url}/interrupt", timeout=10).raise_for_status()


def start_dev(workdir: Path, *, env: dict[str, str] | None = None) -> DevServer:
    """`restoration dev` in `workdir` with nothing configured but `env`, as a newcomer starts it."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir), **(env or {})}
    log = workdir / "dev.log"
    process = subprocess.Popen(
        [RESTORATION, "dev", "--port", str(free_port())],
        cwd=workdir,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    # The banner is printed last, once the URL and token files are written.
    deadline = time.monotonic() + START_SECONDS
    while not (banner := BANNER_COMFYUI.search(log.read_text())):
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "restoration dev did not start"
        time.sleep(0.05)
    token_file = workdir / ".data" / "dev-token"
    return DevServer(
        process=process,
        workdir=workdir,
        url=(workdir / ".data" / "dev-url").read_text().strip(),
        comfyui_url=banner.group(1),
        token=token_file.read_text().strip() if token_file.exists() else "",  # none when Auth0 is configured
    )


def stop_dev(server: DevServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    server = start_dev(tmp_path_factory.mktemp("dev"))
    yield server
    stop_dev(server)


# Per module, not per session: while Playwright's sync driver runs, its event loop counts as
# running in this thread, and pytest-asyncio could not run the other packages' async tests.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium (`make test` does)"
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@dataclass
class Recorded:
    """What a page did: every request (URL and headers), websocket URL and console error."""

    requests: list[Request] = field(default_factory=list)
    websockets: list[WebSocket] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    expected: list[re.Pattern[str]] = field(default_factory=list)

    def expect_console_error(self, pattern: str) -> None:
        """A console error the test causes on purpose (Chromium logs every failed request)."""
        self.expected.append(re.compile(pattern))

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not any(pattern.search(message.text) for pattern in self.expected):
            self.errors.append(f"console: {message.text} ({message.location})")


@pytest.fixture
def recorded() -> Recorded:
    return Recorded()


def _open(browser: Browser, recorded: Recorded, viewport: dict[str, int]) -> Iterator[Page]:
    context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    page = context.new_page()
    page.on("request", lambda request: recorded.requests.append(request))
    page.on("websocket", lambda socket: recorded.websockets.append(socket))
    page.on("console", recorded.on_console)
    page.on("pageerror", lambda error: recorded.errors.append(f"uncaught: {error}"))
    yield page
    context.close()
    assert recorded.errors == [], "the page logged errors"


@pytest.fixture
def page(browser: Browser, recorded: Recorded) -> Iterator[Page]:
    """A fresh desktop-sized page; fails the test if it logged a console error."""
    yield from _open(browser, recorded, DESKTOP)


@pytest.fixture
def phone(browser: Browser, recorded: Recorded) -> Iterator[Page]:
    """A fresh phone-sized page (390 CSS pixels wide); fails the test on a console error."""
    yield from _open(browser, recorded, PHONE)
