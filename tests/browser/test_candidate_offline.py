"""The candidate page keeps every answer through a network cut and an offline reload.

Answer, lose the network, keep answering, reload while offline (the service worker serves the
page, Pyodide and the wheel; the SDK reads the answers back from IndexedDB), answer again, get
the network back: the server's SQLite ends with exactly what the candidate typed last.
"""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import BrowserContext

from integration.conftest import ServerProcess

from .conftest import (
    BOOT_TIMEOUT_MS,
    answer,
    open_candidate,
    screenshot,
    shown,
    stored,
    wait_stored,
    wait_stored_on_server,
    wait_sync,
)

CANDIDATE, CODE = "CAND202301", "AUTH1234"


def test_offline_reload_keeps_answers_and_syncs_them(
    exam: ServerProcess, new_context: Callable[[], BrowserContext]
) -> None:
    context = new_context()
    page = open_candidate(context, exam, CANDIDATE, CODE)
    online = {"Q001": "2", "Q004": "주말에는 책을 읽습니다."}
    for quiz, value in online.items():
        answer(page, quiz, value)
    wait_stored(page, online)
    wait_sync(page, "synced")
    wait_stored_on_server(exam, CANDIDATE, online)
    screenshot(page, "candidate")
    # The worker controls the page once it is installed; the offline reload depends on it.
    page.wait_for_function("navigator.serviceWorker.controller !== null")

    context.set_offline(True)
    offline = {"Q003": "24", "Q004": "주말에는 산책을 합니다.", "Q005": "제 고향은 부산입니다."}
    for quiz, value in offline.items():
        answer(page, quiz, value)
    wait_stored(page, offline)
    wait_sync(page, "offline")
    assert page.is_visible("#offline")
    assert page.get_attribute("#sync", "data-pending") == "3"

    page.reload(timeout=BOOT_TIMEOUT_MS)  # no network: everything comes from the worker
    page.wait_for_selector("#questions li", timeout=BOOT_TIMEOUT_MS)
    expected = {**online, **offline}
    page.wait_for_function("(n) => document.querySelector('#sync')?.dataset.pending === n", arg="3")
    assert shown(page) == expected
    assert page.is_visible("#offline")
    answer(page, "Q002", "1")
    expected["Q002"] = "1"
    wait_stored(page, {"Q002": "1"})
    assert stored(exam, CANDIDATE) == online  # nothing reached the server meanwhile

    context.set_offline(False)
    wait_sync(page, "synced")
    wait_stored_on_server(exam, CANDIDATE, expected)
    assert not page.is_visible("#offline")
    assert shown(page) == expected
