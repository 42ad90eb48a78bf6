"""Reports of the answers waiting on the device (examsync.sync_report)."""

from __future__ import annotations

import json

from examsync.events import SyncState, SyncStatus
from examsync.sync_report import SyncReporter, sync_state_frame


def state(pending: int, age: float | None = None) -> SyncState:
    status = SyncStatus.PENDING if pending else SyncStatus.SYNCED
    return SyncState(status, pending, age, None, False)


def test_a_new_socket_reports_at_once_then_on_change_at_most_once_per_gap() -> None:
    r = SyncReporter(min_gap=1.0, refresh=10.0)
    assert r.next_deadline(state(0)) is None
    assert json.loads(r.due(state(0), 0.0) or "") == {
        "type": "sync_state",
        "pending": 0,
        "oldestPendingAge": None,
    }
    assert r.due(state(0), 0.5) is None and r.next_deadline(state(0)) is None  # nothing waits
    assert r.due(state(2, 0.1), 0.5) is None  # changed, but within the gap
    assert r.next_deadline(state(2, 0.1)) == 1.0
    assert r.due(state(1, 0.6), 0.9) is None
    # the last change is still sent when the gap is over
    assert json.loads(r.due(state(1, 0.7), 1.0) or "")["pending"] == 1
    assert r.next_deadline(state(1, 0.7)) == 11.0  # answers wait: a refresh is due later


def test_waiting_answers_are_reported_every_refresh_and_a_new_socket_starts_over() -> None:
    r = SyncReporter(min_gap=1.0, refresh=10.0)
    r.due(state(3, 1.0), 0.0)
    assert r.due(state(3, 9.0), 9.9) is None
    assert json.loads(r.due(state(3, 11.0), 10.0) or "")["oldestPendingAge"] == 11.0
    r.socket_opened()
    assert r.next_deadline(state(3, 11.0)) is None
    assert r.due(state(3, 11.5), 10.5) is not None  # at once on the new socket


def test_the_frame_rounds_the_age_and_never_sends_a_negative_one() -> None:
    assert json.loads(sync_state_frame(2, 1.23456))["oldestPendingAge"] == 1.235
    assert json.loads(sync_state_frame(2, -0.5))["oldestPendingAge"] == 0.0
