"""The supervisor page follows the group's examinees live, and everyone hears the exam end.

- A candidate's page closed shows as disconnected on the supervisor's page; reopened, as
  connected again (seed 004 events through the socket server); the answers the server holds
  are counted as they come (the snapshot, read again).
- The admin page's "End" reaches the candidate's and the supervisor's pages within a second
  (seed 001's exam_end over the socket server).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from playwright.sync_api import BrowserContext, Page

from integration.conftest import ServerProcess

from .conftest import PLAN_ID, answer, open_admin, open_candidate, screenshot

# Both GROUP01 (the sample plan alternates groups), which SUP202301 supervises.
CANDIDATE, CODE = "CAND202301", "AUTH1234"
OTHER, OTHER_CODE = "CAND202303", "AUTH1236"


def open_supervisor(context: BrowserContext, server: ServerProcess) -> Page:
    page = context.new_page()
    page.goto(f"{server.base}/supervisor?plan={PLAN_ID}")
    page.fill("[name=supervisorId]", "SUP202301")
    page.fill("[name=authCode]", "SUPAUTH01")
    page.click("#login button[type=submit]")
    page.wait_for_selector('#link[data-status="synced"]')
    return page


def connection(page: Page, examinee: str, state: str, timeout: float = 10) -> None:
    page.wait_for_selector(
        f'[data-examinee="{examinee}"] [data-state="{state}"]', timeout=timeout * 1000
    )


def sockets_opened(context: BrowserContext) -> list[str]:
    """The URL of every WebSocket the context's pages open from now on."""
    urls: list[str] = []
    context.on("page", lambda page: page.on("websocket", lambda ws: urls.append(ws.url)))
    return urls


def test_supervisor_sees_a_closed_page_disconnect_and_come_back(
    exam: ServerProcess, new_context: Callable[[], BrowserContext]
) -> None:
    other_context, supervisor_context = new_context(), new_context()
    opened = [sockets_opened(other_context), sockets_opened(supervisor_context)]
    other = open_candidate(other_context, exam, OTHER, OTHER_CODE)  # before the supervisor
    supervisor = open_supervisor(supervisor_context, exam)
    connection(supervisor, OTHER, "CONNECTED")  # learnt from the replayed events
    # Neither page (the SDK in Pyodide, the supervisor's own socket) puts the token in a URL:
    # the browser opened the bare socket URL, and the server saw no `?token=` (it logs each).
    socket_url = f"ws://127.0.0.1:{exam.socket_port}/ws"
    assert [u for found in opened for u in found] == [socket_url, socket_url], opened
    assert "deprecated" not in exam.output()

    context = new_context()
    candidate = open_candidate(context, exam, CANDIDATE, CODE)
    connection(supervisor, CANDIDATE, "CONNECTED")
    candidate.close()
    connection(supervisor, CANDIDATE, "DISCONNECTED")
    assert "SOCKET_CLOSED" in supervisor.inner_text(f'[data-examinee="{CANDIDATE}"]')

    again = open_candidate(context, exam, CANDIDATE, CODE)
    connection(supervisor, CANDIDATE, "CONNECTED")
    assert other.is_visible("#questions")
    answer(again, "Q001", "1")
    answer(again, "Q003", "25")
    supervisor.wait_for_selector(
        f'[data-examinee="{CANDIDATE}"] [data-answered="2"]', timeout=20_000
    )
    screenshot(supervisor, "supervisor")


def test_exam_end_reaches_candidate_and_supervisor_within_a_second(
    exam: ServerProcess, new_context: Callable[[], BrowserContext]
) -> None:
    candidate = open_candidate(new_context(), exam, CANDIDATE, CODE)
    supervisor = open_supervisor(new_context(), exam)
    connection(supervisor, CANDIDATE, "CONNECTED")
    admin = open_admin(new_context(), exam, PLAN_ID)
    admin.wait_for_selector('#plan-status[data-status="in_progress"]')

    admin.once("dialog", lambda dialog: dialog.accept())
    clicked = time.time() * 1000
    admin.click("#end")
    for page in (candidate, supervisor):
        page.wait_for_function("() => window.examsyncDemo.endedAt !== undefined", timeout=5000)
        heard = page.evaluate("window.examsyncDemo.endedAt") - clicked
        assert heard < 1000, f"{page.url} heard of the end {heard:.0f} ms after the click"
    assert candidate.is_visible("#ended")
    assert candidate.locator("#questions").evaluate("q => q.inert")
    assert supervisor.is_visible("#ended")
    admin.wait_for_selector('#plan-status[data-status="completed"]')
