"""One candidate on several tabs and devices: nothing lost, nothing stored twice.

- A new device (a fresh browser profile) restores the answers from the server.
- Leaving the page with unsent answers asks first (beforeunload).
- Two tabs of one candidate both take answers: the second follows the first (which holds the
  SDK's Web Lock) and sends its edits there; when the first closes, the second takes over.
"""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import BrowserContext, Dialog

from integration.conftest import ServerProcess

from .conftest import (
    EXAM_CODE,
    answer,
    open_candidate,
    read_db,
    shown,
    wait_stored,
    wait_stored_on_server,
    wait_sync,
)

CANDIDATE, CODE = "CAND202302", "AUTH1235"


def test_new_device_restores_and_leaving_with_unsent_answers_asks(
    exam: ServerProcess, new_context: Callable[[], BrowserContext]
) -> None:
    first = new_context()
    page = open_candidate(first, exam, CANDIDATE, CODE)
    answers = {"Q001": "3", "Q003": "24"}
    for quiz, value in answers.items():
        answer(page, quiz, value)
    wait_stored(page, answers)

    first.set_offline(True)
    answer(page, "Q005", "서울에서 왔습니다.")
    wait_sync(page, "offline")
    with page.expect_event("dialog") as asked:
        page.close(run_before_unload=True)
    dialog: Dialog = asked.value
    assert dialog.type == "beforeunload"
    dialog.dismiss()  # "stay on this page"
    assert not page.is_closed()
    first.set_offline(False)
    answers["Q005"] = "서울에서 왔습니다."
    wait_sync(page, "synced")
    wait_stored_on_server(exam, CANDIDATE, answers)

    other = open_candidate(new_context(), exam, CANDIDATE, CODE)
    other.wait_for_function("(n) => document.querySelectorAll('[data-quiz]').length === n", arg=5)
    assert shown(other) == answers
    answer(other, "Q003", "25")  # the new device's edit goes above the server's version
    answers["Q003"] = "25"
    wait_stored_on_server(exam, CANDIDATE, answers)


def test_two_tabs_of_one_candidate_lose_and_repeat_nothing(
    exam: ServerProcess, new_context: Callable[[], BrowserContext]
) -> None:
    context = new_context()
    first = open_candidate(context, exam, CANDIDATE, CODE)
    second = open_candidate(context, exam, CANDIDATE, CODE)
    assert second.is_visible("#follower") and not first.is_visible("#follower")

    answer(first, "Q001", "1")
    answer(second, "Q004", "두 번째 탭에서 씁니다.")
    answer(second, "Q003", "24")
    answer(first, "Q005", "첫 번째 탭에서 씁니다.")
    answer(second, "Q001", "4")  # the same question again, from the other tab
    expected = {
        "Q001": "4",
        "Q003": "24",
        "Q004": "두 번째 탭에서 씁니다.",
        "Q005": "첫 번째 탭에서 씁니다.",
    }
    for page in (first, second):
        wait_stored(page, expected)
    wait_sync(first, "synced")
    wait_stored_on_server(exam, CANDIDATE, expected)
    assert shown(first) == shown(second) == expected

    # Each edit is one version on the server: no answer written twice, none skipped.
    history = read_db(
        exam,
        "SELECT quiz_code, version, value FROM answer_history"
        " WHERE candidate_id = ? AND exam_code = ? ORDER BY quiz_code, version",
        CANDIDATE,
        EXAM_CODE,
    )
    assert history == [
        ("Q001", 1, "1"),
        ("Q001", 2, "4"),
        ("Q003", 1, "24"),
        ("Q004", 1, "두 번째 탭에서 씁니다."),
        ("Q005", 1, "첫 번째 탭에서 씁니다."),
    ]

    first.close()  # the browser frees the Web Lock; the second tab's login completes
    second.wait_for_selector("#follower", state="hidden")
    answer(second, "Q002", "2")
    expected["Q002"] = "2"
    wait_stored(second, expected)
    wait_stored_on_server(exam, CANDIDATE, expected)
