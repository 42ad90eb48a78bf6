"""The web demo in a real Chromium (Playwright), against real `examsync serve` processes on a
real Redis and SQLite.

Chromium is the system's (`apt-get install chromium`; `EXAMSYNC_CHROMIUM` names another):
Playwright's own browser download is never used, since it needs the internet. No Chromium is
a failure, not a skip: CI installs it, and a skip would hide that nothing was tested.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    sync_playwright,
)

from integration.conftest import ADMIN_TOKEN, ServerProcess, start_server

ROOT = Path(__file__).resolve().parents[2]
WEB_DIR = ROOT / "web_demo"
SCREENSHOTS = ROOT / "docs" / "screenshots"
PLAN_ID, EXAM_CODE = "PLAN202401", "EXAM202401"
BOOT_TIMEOUT_MS = 60_000  # Pyodide's first boot on a busy CI core
VIEWPORT = {"width": 1280, "height": 800}


@pytest.fixture(scope="session")
def web_assets() -> Path:
    """Pyodide from npm and the SDK wheel, made once for the run (as `examsync demo` does)."""
    from examsync_server.config import Settings
    from examsync_server.web import prepare_assets

    if prepare_assets(Settings().with_changes(web_dir=str(WEB_DIR))) is None:
        pytest.fail(f"{WEB_DIR} holds no web demo", pytrace=False)
    return WEB_DIR


# Package scope: while Playwright's sync API runs, the main thread has a running event loop
# (asyncio.run() fails there), so it must be gone before the rest of the suite runs.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    from examsync_server.web import chromium

    try:
        path = chromium.executable()
    except FileNotFoundError as exc:
        pytest.fail(f"{exc}; the browser tests need it and are not skipped", pytrace=False)
    launched = playwright.chromium.launch(executable_path=path, headless=True, args=chromium.ARGS)
    yield launched
    launched.close()


REPORT_VIOLATIONS = """document.addEventListener("securitypolicyviolation", (e) =>
    console.error(`Content Security Policy violation: ${e.violatedDirective} ${e.blockedURI}`));"""


@pytest.fixture
def new_context(browser: Browser) -> Iterator[Callable[[], BrowserContext]]:
    """A fresh browser profile per call (another device); all closed after the test, which
    fails if any page or worker broke the server's Content-Security-Policy."""
    opened: list[BrowserContext] = []
    violations: list[str] = []

    def record(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    def make() -> BrowserContext:
        context = browser.new_context(viewport=VIEWPORT, locale="ko-KR")
        context.set_default_timeout(20_000)
        context.on("console", record)
        # An eval the policy refuses throws in the page without a console line: say it there.
        context.add_init_script(REPORT_VIOLATIONS)
        opened.append(context)
        return context

    yield make
    for context in opened:
        context.close()
    assert not violations, violations


@pytest.fixture
def server(tmp_path: Path, redis_url: str, web_assets: Path) -> Iterator[ServerProcess]:
    """`examsync serve --web-dir web_demo` with no plan yet."""
    started = start_server(tmp_path / "data", redis_url, "--web-dir", str(web_assets))
    yield started
    started.stop()


@pytest.fixture
def exam(server: ServerProcess) -> ServerProcess:
    """The server with the sample plan started and in its exam stage (STEP02)."""
    return start_exam(server)


def start_exam(server: ServerProcess) -> ServerProcess:
    """The sample plan (4 candidates, no camera) loaded, started and in its exam stage."""
    from examsync_server.demo.sample import sample_package, sample_plan

    plan = sample_plan(candidates=4)
    plan["exam_plan"]["requires_camera"] = False
    load_plan(server, plan, sample_package())
    for step in ("prepare", "start", "advance"):
        admin_ok(server, "POST", f"/api/v1/admin/plans/{PLAN_ID}/{step}")
    return server


def admin_ok(server: ServerProcess, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    response = server.admin(method, path, **kwargs)
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def load_plan(server: ServerProcess, plan: dict[str, Any], package: bytes) -> None:
    admin_ok(server, "PUT", f"/api/v1/admin/plans/{PLAN_ID}", json=plan)
    digest = hashlib.sha256(package).hexdigest()
    admin_ok(
        server,
        "PUT",
        f"/api/v1/admin/plans/{PLAN_ID}/package",
        content=package,
        headers={"X-Content-SHA256": digest},
    )


# --- the admin page ---------------------------------------------------------------------------


def open_admin(context: BrowserContext, server: ServerProcess, plan: str = "") -> Page:
    """A new tab on the admin page, signed in through its form (the token is in no URL)."""
    page = context.new_page()
    page.goto(f"{server.base}/admin" + (f"?plan={plan}" if plan else ""))
    page.fill("#signin [name=token]", ADMIN_TOKEN)
    page.click("#signin button[type=submit]")
    page.wait_for_selector("#workspace:not([hidden])")
    return page


# --- the candidate page ------------------------------------------------------------------------


def open_candidate(
    context: BrowserContext, server: ServerProcess, candidate: str, code: str
) -> Page:
    """A new tab, signed in, with the questions shown."""
    page = context.new_page()
    page.goto(f"{server.base}/candidate?plan={PLAN_ID}")
    page.fill("[name=candidateId]", candidate)
    page.fill("[name=authCode]", code)
    page.click("#login button[type=submit]")
    page.wait_for_selector("#questions li", timeout=BOOT_TIMEOUT_MS)
    return page


def answer(page: Page, quiz: str, value: str) -> None:
    """Type (or pick) an answer as a candidate does, then leave the field (saved at once)."""
    field = page.locator(f'[data-quiz="{quiz}"]')
    if field.evaluate("f => f.tagName") == "FIELDSET":
        field.locator(f'input[value="{value}"]').check()
    else:
        field.fill(value)
        field.blur()


def shown(page: Page) -> dict[str, str]:
    """What the answer fields show."""
    values: dict[str, str] = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll("[data-quiz]")].map((f) =>
            [f.dataset.quiz, f.tagName === "FIELDSET"
                ? f.querySelector("input:checked")?.value ?? "" : f.value]))"""
    )
    return {quiz: value for quiz, value in values.items() if value}


def wait_stored(page: Page, expected: dict[str, str], timeout: float = 20) -> None:
    """Until this tab knows every expected answer as stored on the device (it has a version)."""
    page.wait_for_function(
        """(expected) => Object.entries(expected).every(([quiz, value]) => {
            const a = window.examsyncDemo.state.answers[quiz];
            return a && a.value === value && a.version > 0; })""",
        arg=expected,
        timeout=timeout * 1000,
    )


def wait_sync(page: Page, status: str, timeout: float = 30) -> None:
    page.wait_for_selector(f'#sync[data-status="{status}"]', timeout=timeout * 1000)


# --- the server's SQLite -----------------------------------------------------------------------


def read_db(server: ServerProcess, sql: str, *args: Any) -> list[Any]:
    """Rows from the server's SQLite file, read-only beside the live process (WAL)."""
    path = server.data_dir / "examsync.sqlite3"
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return db.execute(sql, args).fetchall()


def stored(server: ServerProcess, candidate: str) -> dict[str, str]:
    rows = read_db(
        server,
        "SELECT quiz_code, value FROM answer WHERE candidate_id = ? AND exam_code = ?",
        candidate,
        EXAM_CODE,
    )
    return dict(rows)


def wait_stored_on_server(
    server: ServerProcess, candidate: str, expected: dict[str, str], timeout: float = 20
) -> None:
    deadline = time.monotonic() + timeout
    while (found := stored(server, candidate)) != expected:
        assert time.monotonic() < deadline, f"SQLite has {found}, expected {expected}"
        time.sleep(0.1)


def screenshot(page: Page, name: str) -> None:
    """The README's pictures, taken from the real pages by the tests."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png")
