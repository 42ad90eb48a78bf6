"""The sans-I/O sync engine: outbox, versions, acks, retries, events (examsync.engine)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from examsync_fakes import CANDIDATE, EXAM, PLAN, Clock, FakeServer

from examsync.engine import Engine, EngineConfig, OutboxState, SaveRequest
from examsync.events import (
    AnswerAcknowledged,
    AnswerOverridden,
    DeliveryFailure,
    SyncState,
    SyncStatus,
)
from examsync.exceptions import (
    LocalProtocolError,
    RemoteProtocolError,
    ServerError,
    StorageError,
    TransportError,
)
from examsync.messages import AckStatus, SavePayload, read_save_response
from examsync.protocol import decode_json
from examsync.storage import Changes, MemoryStorage

CONFIG = EngineConfig(plan_id=PLAN, exam_code=EXAM, candidate_id=CANDIDATE)


def make(
    storage: MemoryStorage | None = None, rand: float = 0.5, **config: Any
) -> tuple[Engine, MemoryStorage, Clock]:
    storage = storage if storage is not None else MemoryStorage()
    cfg = EngineConfig(plan_id=PLAN, exam_code=EXAM, candidate_id=CANDIDATE, **config)
    return Engine(cfg, storage, lambda: rand), storage, Clock()


def send(engine: Engine, clock: Clock) -> SaveRequest:
    request = engine.next_request(clock.now)
    assert request is not None
    return request


def deliver(engine: Engine, server: FakeServer, request: SaveRequest, clock: Clock) -> None:
    status, body = server.save(request.body)
    engine.receive_save_response(request.batch_id, status, json.dumps(body).encode(), clock.now)


# --- local writes ---------------------------------------------------------------------------------


def test_set_answer_is_durable_before_it_returns() -> None:
    engine, storage, clock = make()
    assert engine.set_answer("Q1", "a", clock.now) == 1
    snap = storage.load()
    assert snap.answers["Q1"].value == "a" and snap.answers["Q1"].version == 1
    assert snap.outbox["Q1"].version == 1
    assert engine.state is OutboxState.READY


def test_versions_rise_per_answer_and_survive_a_restart() -> None:
    engine, storage, clock = make()
    assert [engine.set_answer("Q1", v, clock.now) for v in "abc"] == [1, 2, 3]
    assert engine.set_answer("Q2", "x", clock.now) == 1
    assert engine.set_answer("Q1", "c", clock.now) == 3  # same value: not a new version
    again, _, _ = make(storage)
    assert again.answers["Q1"].value == "c"
    assert again.set_answer("Q1", "d", clock.now) == 4
    assert again.state is OutboxState.READY


def test_unsent_edits_of_one_answer_coalesce() -> None:
    engine, _, clock = make()
    engine.set_answer("Q1", "a", clock.now)
    first = clock.now
    engine.set_answer("Q1", "b", clock.advance(5))
    assert list(engine.outbox) == ["Q1"]
    assert (engine.outbox["Q1"].value, engine.outbox["Q1"].version) == ("b", 2)
    assert engine.outbox["Q1"].queued_at == first  # age counts from the first unsent edit
    assert engine.sync_state(clock.advance(5)).oldest_pending_age == 10


def test_bad_local_input_is_refused_before_anything_is_written() -> None:
    engine, storage, clock = make()
    commits = storage.commits
    with pytest.raises(LocalProtocolError):
        engine.set_answer("", "a", clock.now)
    with pytest.raises(LocalProtocolError):
        engine.set_answer("Q1", 3, clock.now)  # type: ignore[arg-type]
    assert storage.commits == commits


class FlakyStorage(MemoryStorage):
    fail = False

    def commit(self, changes: Changes) -> None:
        if self.fail:
            raise OSError("disk full")
        super().commit(changes)


def test_a_failed_commit_changes_nothing() -> None:
    storage = FlakyStorage()
    engine, _, clock = make(storage)
    engine.set_answer("Q1", "a", clock.now)
    storage.fail = True
    with pytest.raises(StorageError):
        engine.set_answer("Q1", "b", clock.now)
    assert engine.answers["Q1"].value == "a" and engine.outbox["Q1"].version == 1
    storage.fail = False
    assert engine.set_answer("Q1", "b", clock.now) == 2


def test_storage_of_another_candidate_is_refused() -> None:
    engine, storage, _ = make()
    other = EngineConfig(plan_id=PLAN, exam_code=EXAM, candidate_id="CAND999")
    with pytest.raises(StorageError):
        Engine(other, storage, lambda: 0.5)


# --- sending and acks -----------------------------------------------------------------------------


def test_a_batch_is_a_checksummed_save_payload() -> None:
    engine, _, clock = make(device=CONFIG.device, status="in_progress")
    engine.set_answer("Q1", "①", clock.now)
    engine.set_answer("Q2", "b", clock.now)
    request = send(engine, clock)
    payload = SavePayload.from_wire(decode_json(request.body))  # verifies the checksum
    assert payload == request.payload
    assert (payload.exam_id, payload.test_code, payload.user_id) == (PLAN, EXAM, CANDIDATE)
    assert {c: (e.value, e.version) for c, e in payload.answers.items()} == {
        "Q1": ("①", 1),
        "Q2": ("b", 1),
    }
    assert payload.metadata.behavior.edit_count == 2


def test_one_batch_at_a_time() -> None:
    engine, _, clock = make()
    engine.set_answer("Q1", "a", clock.now)
    send(engine, clock)
    engine.set_answer("Q2", "b", clock.now)
    assert engine.next_request(clock.now) is None
    assert engine.state is OutboxState.SENDING


def test_batches_are_bounded_and_the_rest_follows() -> None:
    engine, _, clock = make(max_batch=2)
    server = FakeServer()
    for i in range(5):
        engine.set_answer(f"Q{i}", "x", clock.advance(1))
    sizes = []
    while (request := engine.next_request(clock.now)) is not None:
        sizes.append(len(request.payload.answers))
        deliver(engine, server, request, clock)
    assert sizes == [2, 2, 1]
    assert engine.state is OutboxState.IDLE and not engine.outbox


def test_an_ack_removes_only_that_exact_version() -> None:
    engine, _, clock = make()
    server = FakeServer()
    engine.set_answer("Q1", "a", clock.now)
    request = send(engine, clock)
    engine.set_answer("Q1", "b", clock.now)  # v2 while v1 is out
    deliver(engine, server, request, clock)
    assert engine.outbox["Q1"].version == 2
    assert engine.state is OutboxState.READY
    deliver(engine, server, send(engine, clock), clock)
    assert not engine.outbox and server.state() == {"Q1": (2, "b")}
    assert engine.receipts["Q1"].payload.version == 2


def test_duplicated_and_late_acks_are_harmless() -> None:
    engine, _, clock = make()
    server = FakeServer()
    engine.set_answer("Q1", "a", clock.now)
    request = send(engine, clock)
    status, body = server.save(request.body)
    engine.receive_save_response(request.batch_id, status, body, clock.now)
    engine.set_answer("Q1", "b", clock.now)
    engine.receive_save_response(request.batch_id, status, body, clock.now)  # again
    assert engine.outbox["Q1"].version == 2
    assert engine.state is OutboxState.READY
    engine.receive_save_response(999, status, body, clock.now)  # never sent: ignored
    assert engine.outbox["Q1"].version == 2


def test_ack_events_and_sync_state() -> None:
    engine, _, clock = make()
    server = FakeServer()
    engine.set_answer("Q1", "a", clock.now)
    assert engine.events_received() == [SyncState(SyncStatus.PENDING, 1, 0.0, None, False)]
    request = send(engine, clock)
    clock.advance(2)
    deliver(engine, server, request, clock)
    events = engine.events_received()
    assert [type(e) for e in events] == [SyncState, AnswerAcknowledged, SyncState]
    ack = events[1]
    assert isinstance(ack, AnswerAcknowledged)
    assert (ack.quiz_code, ack.version, ack.status) == ("Q1", 1, AckStatus.ACCEPTED)
    assert events[-1] == SyncState(SyncStatus.SYNCED, 0, None, clock.now, False)
    assert engine.events_received() == []


# --- failures and retries -------------------------------------------------------------------------


def test_a_failure_backs_off_with_jitter_then_retries() -> None:
    engine, _, clock = make(rand=0.5)
    engine.set_answer("Q1", "a", clock.now)
    delays = []
    for _ in range(7):
        request = send(engine, clock)
        engine.send_failed(request.batch_id, TransportError("refused"), clock.now)
        assert engine.state is OutboxState.BACKOFF
        deadline = engine.next_deadline()
        assert deadline is not None
        delays.append(deadline - clock.now)
        engine.tick(deadline - 0.01)
        assert engine.next_request(clock.now) is None
        clock.now = deadline
        engine.tick(clock.now)
        assert engine.state is OutboxState.READY
    assert delays == pytest.approx([0.5, 1, 2, 4, 8, 15, 15])
    failure = [e for e in engine.events_received() if isinstance(e, DeliveryFailure)][-1]
    assert failure.attempt == 7 and isinstance(failure.error, TransportError)
    assert engine.sync_state(clock.now).status is SyncStatus.OFFLINE


def test_a_silent_request_times_out_and_its_late_ack_still_counts() -> None:
    engine, _, clock = make(request_timeout=10)
    server = FakeServer()
    engine.set_answer("Q1", "a", clock.now)
    request = send(engine, clock)
    assert engine.next_deadline() == request.deadline == clock.now + 10
    engine.tick(clock.advance(10))
    assert engine.state is OutboxState.BACKOFF
    failure = [e for e in engine.events_received() if isinstance(e, DeliveryFailure)]
    assert isinstance(failure[0].error, TransportError) and failure[0].error.timeout
    deliver(engine, server, request, clock)  # the answer to the timed-out save arrives
    assert not engine.outbox and engine.state is OutboxState.IDLE


def test_server_errors_are_reported_and_retried() -> None:
    engine, _, clock = make()
    engine.set_answer("Q1", "a", clock.now)
    request = send(engine, clock)
    body = {"error": {"code": "unavailable", "message": "db down", "details": {}}}
    engine.receive_save_response(request.batch_id, 503, body, clock.now)
    assert engine.state is OutboxState.BACKOFF
    assert engine.sync_state(clock.now).status is SyncStatus.ERROR
    failure = [e for e in engine.events_received() if isinstance(e, DeliveryFailure)][0]
    assert isinstance(failure.error, ServerError) and failure.error.code == "unavailable"
    assert engine.outbox["Q1"].version == 1


def tamper(body: dict[str, Any], how: str) -> Any:
    result = body["results"]["Q1"]
    if how == "garbage":
        return b"<html>"
    if how == "version":
        result["version"] = 7
    elif how == "foreign":
        body["results"]["Q9"] = dict(result)
    elif how == "receipt":
        result["receipt"]["payload"]["valueSha256"] = "0" * 64
    elif how == "type":
        result["status"] = 1
    return body


@pytest.mark.parametrize("how", ["garbage", "version", "foreign", "receipt", "type"])
def test_a_malformed_ack_changes_nothing_and_counts_as_failed(how: str) -> None:
    engine, storage, clock = make()
    server = FakeServer()
    engine.set_answer("Q1", "a", clock.now)
    request = send(engine, clock)
    before = storage.load()
    status, body = server.save(request.body)
    engine.receive_save_response(request.batch_id, status, tamper(body, how), clock.now)
    assert storage.load() == before
    assert engine.state is OutboxState.BACKOFF
    failure = [e for e in engine.events_received() if isinstance(e, DeliveryFailure)][0]
    assert isinstance(failure.error, RemoteProtocolError)


def test_an_ack_that_leaves_answers_out_applies_the_rest_then_backs_off() -> None:
    engine, _, clock = make()
    server = FakeServer()
    engine.set_answer("Q1", "a", clock.now)
    engine.set_answer("Q2", "b", clock.now)
    request = send(engine, clock)
    status, body = server.save(request.body)
    del body["results"]["Q2"]
    engine.receive_save_response(request.batch_id, status, body, clock.now)
    assert list(engine.outbox) == ["Q2"]
    assert engine.state is OutboxState.BACKOFF  # not an immediate resend loop


def test_offline_holds_sends_and_reconnect_retries_at_once() -> None:
    engine, _, clock = make(rand=0.99)
    engine.set_answer("Q1", "a", clock.now)
    request = send(engine, clock)
    engine.send_failed(request.batch_id, TransportError("down"), clock.now)
    engine.connection_lost(clock.now)
    assert engine.sync_state(clock.now).status is SyncStatus.OFFLINE
    deadline = engine.next_deadline()
    assert deadline is not None
    engine.tick(deadline)
    assert engine.next_request(clock.now) is None  # due, but offline
    engine.connection_restored(clock.now)
    assert engine.next_request(clock.now) is not None


def test_reconnect_skips_the_rest_of_a_backoff() -> None:
    engine, _, clock = make(rand=0.99)
    engine.set_answer("Q1", "a", clock.now)
    engine.send_failed(send(engine, clock).batch_id, TransportError("down"), clock.now)
    engine.connection_restored(clock.now)
    assert engine.state is OutboxState.READY


def test_a_clock_jumping_back_does_not_stall_a_retry() -> None:
    engine, _, clock = make(rand=0.99)
    engine.set_answer("Q1", "a", clock.now)
    engine.send_failed(send(engine, clock).batch_id, TransportError("down"), clock.now)
    engine.tick(clock.advance(-3600))
    assert engine.state is OutboxState.READY


def test_a_crash_mid_send_resends_after_restart() -> None:
    engine, storage, clock = make()
    server = FakeServer()
    engine.set_answer("Q1", "a", clock.now)
    lost = send(engine, clock)
    server.save(lost.body)  # the server committed it, but the process died before the ack
    again, _, _ = make(storage)
    assert again.state is OutboxState.READY
    deliver(again, server, send(again, clock), clock)
    assert not again.outbox
    assert again.receipts["Q1"].payload.version == 1


# --- another writer -------------------------------------------------------------------------------


def test_an_edit_older_than_another_devices_is_overridden() -> None:
    engine, _, clock = make()
    server = FakeServer(clock=lambda: clock.now)
    engine.set_answer("Q1", "from the laptop", clock.now)  # not sent yet
    other, _, _ = make()
    other.set_answer("Q1", "from the tablet", clock.advance(1))
    other.set_answer("Q1", "from the tablet, again", clock.advance(1))
    deliver(other, server, send(other, clock), clock)
    deliver(engine, server, send(engine, clock), clock)
    kept = server.answers["Q1"]
    overridden = [e for e in engine.events_received() if isinstance(e, AnswerOverridden)]
    assert overridden == [
        AnswerOverridden("Q1", "from the laptop", "from the tablet, again", 2, kept.updated)
    ]
    assert not engine.outbox and engine.answers["Q1"].value == "from the tablet, again"
    assert engine.sync_state(clock.now).overridden == ("Q1",)
    assert engine.set_answer("Q1", "laptop wins now", clock.now) == 3


# --- behaviour metadata ---------------------------------------------------------------------------


def test_navigation_and_behaviour_ride_along_and_persist() -> None:
    engine, storage, clock = make()
    server = FakeServer()
    engine.record_navigation("Q1", "Q2", clock.now)
    engine.record_behavior(focus_ms=1500, keystrokes=12)
    engine.set_answer("Q2", "a", clock.now)
    engine, _, _ = make(storage)  # restart: counters and steps come back
    request = send(engine, clock)
    behavior = request.payload.metadata.behavior
    assert (behavior.focus_time, behavior.keystrokes, behavior.edit_count) == (1500, 12, 1)
    assert [(s.from_quiz, s.to_quiz) for s in behavior.navigation] == [("Q1", "Q2")]
    engine.record_navigation("Q2", "Q3", clock.now)  # after the batch left: not in it
    deliver(engine, server, request, clock)
    engine.set_answer("Q3", "b", clock.now)
    steps = send(engine, clock).payload.metadata.behavior.navigation
    assert [(s.from_quiz, s.to_quiz) for s in steps] == [("Q2", "Q3")]
    with pytest.raises(LocalProtocolError):
        engine.record_behavior(keystrokes=-1)


def test_invalid_config() -> None:
    with pytest.raises(ValueError):
        EngineConfig(plan_id=PLAN, exam_code=EXAM, candidate_id=CANDIDATE, max_batch=0)


def test_an_answer_read_once_by_the_driver_is_taken_as_read() -> None:
    """A driver that checks receipts reads the answer (read_save_response) and hands on the
    ack it read, or the error: the same outcome as receive_save_response."""
    engine, _, clock = make()
    server = FakeServer()
    engine.set_answer("Q1", "a", clock.now)
    request = send(engine, clock)
    ack = read_save_response(*server.save(request.body))
    engine.receive_save_ack(request.batch_id, ack, clock.now)
    assert not engine.outbox and engine.receipts["Q1"] == ack.results["Q1"].receipt
    engine.set_answer("Q1", "b", clock.now)
    request = send(engine, clock)
    body = {"error": {"code": "unavailable", "message": "db down", "details": {}}}
    with pytest.raises(ServerError) as refused:
        read_save_response(503, body)
    engine.receive_save_error(request.batch_id, refused.value, clock.now)
    assert engine.state is OutboxState.BACKOFF and engine.outbox["Q1"].version == 2
    failure = [e for e in engine.events_received() if isinstance(e, DeliveryFailure)][0]
    assert failure.error is refused.value
