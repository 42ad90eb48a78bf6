"""The plan lifecycle's table (exam/plan_status.py): complete, consistent, and the one that
docs/server.md, the SQLite schema and the plan queue's script agree with."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from examsync_server.errors import ApiError
from examsync_server.exam.plan_status import (
    RULES,
    Action,
    CandidateStatus,
    Goes,
    PlanStatus,
    Refused,
    Repeat,
    allows,
    locked,
    markdown_table,
    outcome,
    refusal,
    require,
    statuses_allowing,
    transition,
)
from examsync_server.pipeline import plan_queue
from examsync_server.store.sqlite import migrations

ROOT = Path(__file__).resolve().parents[2]

# What an admin action refused for its status alone answers (test_admin_errors.py asks the API).
CODE_BY_STATUS = {
    PlanStatus.CREATED: "plan_not_prepared",
    PlanStatus.READY: "plan_not_started",
    PlanStatus.IN_PROGRESS: "plan_in_progress",
    PlanStatus.COMPLETED: "plan_completed",
}


def test_statuses_are_the_wire_strings() -> None:
    assert [str(s) for s in PlanStatus] == ["created", "ready", "in_progress", "completed"]
    assert [str(s) for s in CandidateStatus] == ["ready", "in_progress", "completed"]
    assert PlanStatus.IN_PROGRESS == "in_progress" and PlanStatus("ready") is PlanStatus.READY


@pytest.mark.parametrize("action", list(Action))
def test_every_action_has_an_outcome_in_every_status(action: Action) -> None:
    assert set(RULES) == set(Action)
    assert set(RULES[action].outcomes) == set(PlanStatus)
    for status in PlanStatus:
        assert isinstance(outcome(status, action), Goes | Repeat | Refused)
        assert outcome(str(status), action) == outcome(status, action)


def test_the_status_moves_only_as_the_diagram_draws() -> None:
    moves = {
        (status, found.to)
        for rule in RULES.values()
        for status, found in rule.outcomes.items()
        if isinstance(found, Goes) and found.to != status
    }
    C, R, P, D = PlanStatus
    assert moves == {(C, R), (R, P), (P, D), (R, C)}


def test_a_repeat_is_where_its_action_leads() -> None:
    """Idempotent repeats: an action answers `already…` only in the status it leads to."""
    for action, rule in RULES.items():
        repeats = {s for s, found in rule.outcomes.items() if isinstance(found, Repeat)}
        targets = {found.to for found in rule.outcomes.values() if isinstance(found, Goes)}
        assert repeats <= targets, action
    assert outcome(PlanStatus.IN_PROGRESS, Action.START) == Repeat("alreadyStarted")
    assert outcome(PlanStatus.COMPLETED, Action.END) == Repeat("alreadyCompleted")


def test_refusals_by_status_share_one_code_per_status() -> None:
    """A refusal worded "cannot … plan …: it is …" names the status in its code."""
    generic = [
        (status, found)
        for rule in RULES.values()
        for status, found in rule.outcomes.items()
        if isinstance(found, Refused) and found.message.startswith("cannot")
    ]
    assert len(generic) >= 10
    for status, found in generic:
        assert found.code == CODE_BY_STATUS[status], (status, found)
        assert found.details == ("plan_id", "status", "action")


def test_a_started_plan_is_locked() -> None:
    for status in PlanStatus:
        started = status in (PlanStatus.IN_PROGRESS, PlanStatus.COMPLETED)
        assert locked(status) is started
        if started:
            assert require_code(Action.REPLACE, status) == "plan_locked"
            assert require_code(Action.UPLOAD_PACKAGE, status) == "plan_locked"


def require_code(action: Action, status: PlanStatus) -> str:
    with pytest.raises(ApiError) as caught:
        require(action, "PLAN1", status)
    assert caught.value.status == 409
    return caught.value.code


def test_errors_carry_what_their_refusal_names() -> None:
    error = refusal(Action.START, "PLAN1", PlanStatus.COMPLETED)
    assert (error.code, error.message) == (
        "plan_completed",
        "cannot start plan PLAN1: it is completed",
    )
    assert error.details == {"plan_id": "PLAN1", "status": "completed", "action": "start"}
    error = refusal(Action.REPLACE, "PLAN1", PlanStatus.IN_PROGRESS)
    assert error.details == {"plan_id": "PLAN1", "status": "in_progress"}
    assert error.message == "plan PLAN1 is in_progress; it can no longer be replaced"
    error = refusal(Action.SIGN_IN, "PLAN1", PlanStatus.CREATED)
    assert (error.code, error.details) == ("plan_not_prepared", {"plan_id": "PLAN1"})
    error = refusal(Action.SAVE, "PLAN1", PlanStatus.COMPLETED, endedAt="T")
    assert (error.code, error.details) == ("exam_completed", {"endedAt": "T"})


def test_what_is_not_refused_is_returned_not_raised() -> None:
    assert require(Action.START, "P", PlanStatus.IN_PROGRESS) == Repeat("alreadyStarted")
    assert transition(Action.PREPARE, "P", PlanStatus.READY) is PlanStatus.READY
    assert transition(Action.UPLOAD_PACKAGE, "P", PlanStatus.READY) is PlanStatus.CREATED
    with pytest.raises(ValueError):
        transition(Action.END, "P", PlanStatus.COMPLETED)  # a repeat, not a transition
    with pytest.raises(ValueError):
        refusal(Action.SAVE, "P", PlanStatus.IN_PROGRESS)
    with pytest.raises(ValueError):
        outcome("paused", Action.SAVE)
    assert allows(PlanStatus.READY, Action.SIGN_IN) and not allows("created", Action.SIGN_IN)


def test_docs_show_the_table() -> None:
    """docs/server.md's lifecycle table is `markdown_table()`, verbatim."""
    docs = (ROOT / "docs" / "server.md").read_text(encoding="utf-8")
    assert markdown_table() in docs


def test_the_schema_allows_exactly_the_enums() -> None:
    """The SQLite CHECK constraints (migration history, never edited) name the same values."""
    sql = "\n".join(text for _, _, text in migrations())

    def column(table: str) -> tuple[str, set[str]]:
        body = re.search(rf"CREATE TABLE {table} \((.*?)\n\);", sql, re.S)
        assert body is not None, table
        found = re.search(
            r"status\s+TEXT NOT NULL DEFAULT '(\w+)'\s+CHECK \(status IN \(([^)]*)\)\)", body[1]
        )
        assert found is not None, table
        return found[1], set(re.findall(r"'(\w+)'", found[2]))

    assert column("exam_plan") == (PlanStatus.CREATED, set(PlanStatus))
    assert column("exam_candidate") == (CandidateStatus.READY, set(CandidateStatus))


def test_the_queue_script_takes_what_the_table_allows() -> None:
    assert statuses_allowing(Action.SAVE) == (PlanStatus.IN_PROGRESS,)
    assert "local taking = {['in_progress'] = true}" in plan_queue._ENQUEUE
