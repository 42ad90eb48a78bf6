"""Failed sign-ins on the pages (issue 15, defect 3): the candidate page says why a sign-in is
refused (in Korean and English), the supervisor page shows the lockout live and lifts it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext

from integration.conftest import ServerProcess, start_server

from .conftest import BOOT_TIMEOUT_MS, PLAN_ID, open_candidate, start_exam
from .test_supervisor import CANDIDATE, CODE, open_supervisor


@pytest.fixture
def exam(tmp_path: Path, redis_url: str, web_assets: Path) -> Iterator[ServerProcess]:
    """The sample exam on a server that takes 10 failures a minute: a lockout without waiting
    for two real minutes."""
    server = start_server(
        tmp_path / "data",
        redis_url,
        "--web-dir",
        str(web_assets),
        "--login-failures-per-account-minute",
        "10",
    )
    try:
        start_exam(server)
        yield server
    finally:
        server.stop()


def test_a_locked_out_candidate_is_told_and_the_supervisor_unlocks(
    exam: ServerProcess, new_context: Callable[[], BrowserContext]
) -> None:
    supervisor = open_supervisor(new_context(), exam)
    wrong = {"planId": PLAN_ID, "candidateId": CANDIDATE, "authCode": "AUTH0000"}
    for _ in range(10):
        assert httpx.post(f"{exam.base}/api/v1/sessions", json=wrong).status_code == 401
    lock = f'[data-examinee="{CANDIDATE}"] .lockout'
    supervisor.wait_for_selector(lock)  # the live `locked_out` alert

    candidate = new_context().new_page()
    candidate.goto(f"{exam.base}/candidate?plan={PLAN_ID}")
    candidate.fill("[name=candidateId]", CANDIDATE)
    candidate.fill("[name=authCode]", CODE)  # the right code: refused all the same
    candidate.click("#login button[type=submit]")
    candidate.wait_for_selector(
        "#login-error:has-text('Ask your supervisor')", timeout=BOOT_TIMEOUT_MS
    )
    message = candidate.inner_text("#login-error")
    assert "감독관에게 해제를 요청" in message and "wrong" not in message.lower()

    supervisor.click(f"{lock} button.unlock")
    supervisor.wait_for_selector(lock, state="detached")
    open_candidate(new_context(), exam, CANDIDATE, CODE)
