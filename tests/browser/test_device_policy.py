"""One candidate on two devices (two browser profiles), under each plan setting.

- `single` (the default): signing in on device B takes the exam over; device A says so in
  Korean and English, takes no more answers, and continues only when asked to, restoring B's
  answers first. The candidate's last edits, made on A, are what the server keeps. The
  supervisor's page shows which device is active, live.
- `merge`: both devices answer. A's offline edits, older than B's, lose: A shows B's answers
  and says plainly, in both languages, which of its answers were not kept; "All saved" is
  never shown for an answer the server does not hold.

Questions: Q001 is a `choice`, Q005 a `text` question of the sample exam.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import BrowserContext, Page

from integration.conftest import ServerProcess

from .conftest import (
    PLAN_ID,
    admin_ok,
    answer,
    load_plan,
    open_candidate,
    screenshot,
    shown,
    wait_stored,
    wait_stored_on_server,
    wait_sync,
)
from .test_supervisor import open_supervisor

CANDIDATE, CODE = "CAND202303", "AUTH1236"


@pytest.fixture
def merge_exam(server: ServerProcess) -> ServerProcess:
    """The sample plan with `device_policy: merge`, in its exam stage."""
    from examsync_server.demo.sample import sample_package, sample_plan

    plan = sample_plan(candidates=4)
    plan["exam_plan"]["requires_camera"] = False
    plan["exam_plan"]["device_policy"] = "merge"
    load_plan(server, plan, sample_package())
    for step in ("prepare", "start", "advance"):
        admin_ok(server, "POST", f"/api/v1/admin/plans/{PLAN_ID}/{step}")
    return server


def wait_shown(page: Page, expected: dict[str, str], timeout: float = 20) -> None:
    page.wait_for_function(
        """(expected) => Object.entries(expected).every(([quiz, value]) => {
            const f = document.querySelector(`[data-quiz="${quiz}"]`);
            const v = f.tagName === "FIELDSET" ? f.querySelector("input:checked")?.value : f.value;
            return v === value; })""",
        arg=expected,
        timeout=timeout * 1000,
    )


def device_id(page: Page) -> str:
    found: str = page.evaluate("window.examsyncDemo.state.device.deviceId")
    return found


def active_device(supervisor: Page, device: str) -> None:
    supervisor.wait_for_selector(
        f'[data-examinee="{CANDIDATE}"] [data-device="{device}"]', timeout=10_000
    )


def test_single_a_new_sign_in_takes_over_and_the_last_edit_wins(
    exam: ServerProcess, new_context: Callable[[], BrowserContext]
) -> None:
    device_a = open_candidate(new_context(), exam, CANDIDATE, CODE)
    answers = {"Q001": "1", "Q005": "A에서 처음 쓴 답"}
    for quiz, value in answers.items():
        answer(device_a, quiz, value)
    wait_stored(device_a, answers)
    wait_stored_on_server(exam, CANDIDATE, answers)

    supervisor = open_supervisor(new_context(), exam)
    id_a = device_id(device_a)
    active_device(supervisor, id_a)  # from the snapshot

    device_b = open_candidate(new_context(), exam, CANDIDATE, CODE)  # the takeover
    wait_shown(device_b, answers)
    id_b = device_id(device_b)
    assert id_b != id_a
    active_device(supervisor, id_b)  # from the live event
    device_a.wait_for_selector("#replaced", state="visible")
    banner = device_a.text_content("#replaced") or ""
    assert "다른 기기에서 계속되고 있습니다" in banner
    assert "This exam continues on another device" in banner
    wait_sync(device_a, "replaced")
    assert device_a.evaluate("document.querySelector('#questions').inert")
    screenshot(device_a, "candidate-device-replaced")

    answers = {"Q001": "2", "Q005": "B에서 고친 답"}
    for quiz, value in answers.items():
        answer(device_b, quiz, value)
    wait_stored_on_server(exam, CANDIDATE, answers)

    # Back on A: what B changed comes first, then A's edits go on top of it.
    device_a.click("#continue-here")
    device_a.wait_for_selector("#replaced", state="hidden")
    wait_shown(device_a, answers)
    device_b.wait_for_selector("#replaced", state="visible")
    answers = {"Q001": "4", "Q005": "A에서 마지막으로 쓴 답"}
    for quiz, value in answers.items():
        answer(device_a, quiz, value)
    wait_sync(device_a, "synced")
    wait_stored_on_server(exam, CANDIDATE, answers)
    assert shown(device_a) == answers
    wait_sync(device_b, "replaced")
    active_device(supervisor, id_a)


def test_merge_an_older_offline_edit_loses_and_the_device_says_so(
    merge_exam: ServerProcess, new_context: Callable[[], BrowserContext]
) -> None:
    context_a = new_context()
    device_a = open_candidate(context_a, merge_exam, CANDIDATE, CODE)
    device_b = open_candidate(new_context(), merge_exam, CANDIDATE, CODE)
    device_a.wait_for_selector("#elsewhere", state="visible")  # told, not stopped
    assert "also signed in on another device" in (device_a.text_content("#elsewhere") or "")
    assert not device_a.is_visible("#replaced")

    context_a.set_offline(True)
    wait_sync(device_a, "offline")
    answer(device_a, "Q001", "1")
    answer(device_a, "Q005", "A에서 오프라인으로 쓴 답")
    wait_stored(device_a, {"Q001": "1", "Q005": "A에서 오프라인으로 쓴 답"})

    kept = {"Q001": "3", "Q005": "B에서 나중에 쓴 답"}
    for quiz, value in kept.items():
        answer(device_b, quiz, value)  # later in real time than A's edits
    wait_sync(device_b, "synced")
    wait_stored_on_server(merge_exam, CANDIDATE, kept)

    context_a.set_offline(False)
    wait_shown(device_a, kept)
    for quiz in kept:
        box = device_a.locator(f'[data-conflict="{quiz}"]')
        box.wait_for(state="visible")
        text = box.text_content() or ""
        assert "저장되지 않았습니다" in text and "was not saved" in text
    assert "B에서 나중에 쓴 답" in (device_a.text_content('[data-conflict="Q005"]') or "")
    assert "A에서 오프라인으로 쓴 답" in (device_a.text_content('[data-conflict="Q005"]') or "")
    wait_sync(device_a, "synced")  # true now: the device holds what the server keeps
    wait_stored_on_server(merge_exam, CANDIDATE, kept)
    screenshot(device_a, "candidate-answer-overridden")

    device_a.locator('[data-conflict="Q001"] button').click()
    device_a.locator('[data-conflict="Q001"]').wait_for(state="hidden")
    answer(device_a, "Q005", "A에서 다시 쓴 답")  # an edit settles its conflict too
    device_a.locator('[data-conflict="Q005"]').wait_for(state="hidden")
    kept["Q005"] = "A에서 다시 쓴 답"
    wait_stored_on_server(merge_exam, CANDIDATE, kept)
    wait_shown(device_b, {"Q001": "3"})  # B is not stopped under merge
    answer(device_b, "Q001", "2")
    kept["Q001"] = "2"
    wait_stored_on_server(merge_exam, CANDIDATE, kept)
