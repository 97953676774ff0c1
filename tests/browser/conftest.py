"""Fixtures for the browser tests: headless Debian Chromium through Playwright, a page per test, screenshots,
and a local stand-in for MTurk's externalSubmit endpoint."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
# Local pages answer in milliseconds; a step that waits longer than this is a failure, not a slow machine.
STEP_TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium per test module. While Playwright runs, the unsafe-async switch is on, and only then.

    Playwright's sync API keeps an asyncio loop marked as running on this thread, so Django's ORM, which
    refuses to run inside an event loop, would raise SynchronousOnlyOperation on every query the test makes.
    Nothing async touches the database here: the loop only carries Playwright's messages to Chromium, the
    test's queries run between those calls, and the live server answers from its own thread. The switch is
    restored afterwards so that tests outside this package keep the check.
    """
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: the browser tests drive Debian's chromium (apt install chromium)")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context per test (no cookies or storage carried over). A script error fails the test."""
    context = browser.new_context(viewport=DESKTOP, locale="en-GB")
    context.set_default_timeout(STEP_TIMEOUT_MS)
    new_page = context.new_page()
    script_errors: list[str] = []
    new_page.on("pageerror", lambda error: script_errors.append(str(error)))

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            script_errors.append(message.text)

    new_page.on("console", on_console)
    yield new_page
    context.close()
    assert not script_errors, f"the page logged errors: {script_errors}"


@pytest.fixture
def screenshot():
    """Save a full-page screenshot as artifacts/screenshots/<name>.png (git-ignored) for people to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def save(page: Page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save


@dataclass
class SubmitRecorder:
    """Stands in for MTurk: the origin a HIT's turkSubmitTo names, and the forms posted to externalSubmit."""

    origin: str
    posts: list[dict[str, list[str]]] = field(default_factory=list)


@pytest.fixture
def mturk_submit_recorder() -> Iterator[SubmitRecorder]:
    recorder = SubmitRecorder(origin="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path.split("?")[0] != "/mturk/externalSubmit":
                self.send_error(404)
                return
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            recorder.posts.append(parse_qs(body))
            self._answer(b'<!doctype html><title>MTurk</title><link rel="icon" href="data:,"><h1>HIT submitted</h1>')

        def _answer(self, html: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(html)))
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, format: str, *args) -> None:  # keep pytest's output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder.origin = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield recorder
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
