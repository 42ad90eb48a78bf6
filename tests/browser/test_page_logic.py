"""The candidate page's Python half (web_demo/assets/candidate_page.py) on CPython: the parts
that decide something without a browser — question order, which exam, what the page is told."""

from __future__ import annotations

import importlib.util
import json
import sys
from types import ModuleType
from typing import Any

import pytest

from examsync import (
    AnswerOverridden,
    DeviceChanged,
    ExamEnded,
    StorageFullError,
    StorageState,
    SyncState,
    SyncStatus,
)

from .conftest import WEB_DIR


@pytest.fixture(scope="module")
def page() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "candidate_page", WEB_DIR / "assets" / "candidate_page.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("candidate_page", module)
    spec.loader.exec_module(module)
    return module


def exam() -> dict[str, Any]:
    from examsync_server.demo.sample import sample_manifest

    exam: dict[str, Any] = sample_manifest()["exams"][0]
    return exam


def codes(questions: list[dict[str, Any]]) -> list[str]:
    return [q["quizCode"] for q in questions]


def test_the_order_is_the_candidates_own_and_stable(page: ModuleType) -> None:
    original = exam()
    before = json.dumps(original)
    orders = {
        seed: page.order_questions(original, seed, shuffle_questions=True, shuffle_answers=True)
        for seed in (f"PLAN202401:CAND2023{i:02d}:EXAM202401" for i in range(1, 11))
    }
    again = page.order_questions(
        original, "PLAN202401:CAND202301:EXAM202401", shuffle_questions=True, shuffle_answers=True
    )
    assert again == orders["PLAN202401:CAND202301:EXAM202401"]
    assert len({tuple(codes(o)) for o in orders.values()}) > 1  # not everyone gets one order
    for ordered in orders.values():
        assert sorted(codes(ordered)) == codes(original["questions"])
        choices = {q["quizCode"]: q.get("choices") for q in ordered}
        assert sorted(c["id"] for c in choices["Q001"]) == ["1", "2", "3", "4"]
    assert json.dumps(original) == before  # the package's manifest is left as it was


def test_without_shuffling_the_package_order_stands(page: ModuleType) -> None:
    ordered = page.order_questions(exam(), "any", shuffle_questions=False, shuffle_answers=False)
    assert ordered == exam()["questions"]


def test_the_exam_is_the_current_or_next_exam_stage(page: ModuleType) -> None:
    stages = [
        {"stageId": "STEP01", "order": 0, "examCode": None},
        {"stageId": "STEP02", "order": 1, "examCode": "EXAM1"},
        {"stageId": "STEP03", "order": 2, "examCode": "EXAM2"},
    ]
    choose = page.choose_exam_code
    assert choose({"stages": stages, "progress": {"currentStage": "STEP01"}}) == "EXAM1"
    assert choose({"stages": stages, "progress": {"currentStage": "STEP03"}}) == "EXAM2"
    assert choose({"stages": stages, "progress": {"currentStage": None}}) == "EXAM1"
    assert choose({"stages": stages[:1]}) is None


def test_events_reach_the_page_as_plain_json(page: ModuleType) -> None:
    sync = SyncState(SyncStatus.OFFLINE, 2, 3.5, None, False, ("Q002",))
    assert page.event_message(sync) == {
        "type": "sync",
        "status": "offline",
        "pending": 2,
        "oldestPendingAge": 3.5,
        "lastAckAt": None,
        "inFlight": False,
        "overridden": ["Q002"],
    }
    lost = AnswerOverridden("Q002", "2", "3", 4, "2026-12-07T10:00:00.000Z")
    assert page.event_message(lost) == {
        "type": "overridden",
        "quizCode": "Q002",
        "version": 4,
        "value": "3",
        "lostValue": "2",
    }
    moved = DeviceChanged("dev-b", "2026-12-07T10:00:01.000Z", "single", False, True)
    assert page.event_message(moved) == {
        "type": "device",
        "deviceId": "dev-b",
        "since": "2026-12-07T10:00:01.000Z",
        "policy": "single",
        "thisDevice": False,
        "replaced": True,
    }
    full = StorageState("indexeddb", False, StorageFullError("quota"))
    assert page.event_message(full)["error"].startswith("StorageFullError")
    ended = page.event_message(ExamEnded("PLAN202401", "시험이 종료되었습니다.", "t"))
    assert ended == {"type": "exam_end", "message": "시험이 종료되었습니다.", "timestamp": "t"}
    assert page.event_message(object()) is None
