"""The restore merge (examsync.restore), through Engine.receive_restore."""

from __future__ import annotations

import json

import pytest
from examsync_fakes import CANDIDATE, EXAM, PLAN, Clock, FakeServer

from examsync.engine import Engine, EngineConfig, OutboxState
from examsync.events import RestoreReport
from examsync.exceptions import ChecksumMismatch, RemoteProtocolError
from examsync.protocol import checksum
from examsync.storage import MemoryStorage

CONFIG = EngineConfig(plan_id=PLAN, exam_code=EXAM, candidate_id=CANDIDATE)


def make(storage: MemoryStorage | None = None) -> Engine:
    return Engine(CONFIG, storage if storage is not None else MemoryStorage(), lambda: 0.5)


def sync(engine: Engine, server: FakeServer, clock: Clock) -> None:
    while (request := engine.next_request(clock.now)) is not None:
        status, body = server.save(request.body)
        engine.receive_save_response(request.batch_id, status, body, clock.now)


def test_a_new_device_restores_everything_and_continues_above() -> None:
    clock, server = Clock(), FakeServer()
    laptop = make()
    laptop.set_answer("Q1", "a", clock.now)
    laptop.set_answer("Q1", "b", clock.now)
    laptop.set_answer("Q2", "정답", clock.now)
    sync(laptop, server, clock)

    tablet = make()
    report = tablet.receive_restore(json.dumps(server.restore()).encode(), clock.now)
    assert report == RestoreReport(restored=("Q1", "Q2"))
    assert {c: (a.value, a.version) for c, a in tablet.answers.items()} == {
        "Q1": ("b", 2),
        "Q2": ("정답", 1),
    }
    assert not tablet.outbox and tablet.state is OutboxState.IDLE
    assert tablet.set_answer("Q1", "c", clock.now) == 3
    assert report in tablet.events_received()


def test_a_newer_unacknowledged_local_edit_wins() -> None:
    clock, server = Clock(), FakeServer()
    engine = make()
    engine.set_answer("Q1", "a", clock.now)
    sync(engine, server, clock)
    engine.set_answer("Q1", "b", clock.now)  # v2, not sent yet
    report = engine.receive_restore(server.restore(), clock.now)
    assert report.kept_local == ("Q1",) and not report.restored
    assert (engine.answers["Q1"].value, engine.outbox["Q1"].version) == ("b", 2)


def test_the_server_wins_over_an_older_or_equal_queued_edit() -> None:
    clock, server = Clock(), FakeServer()
    engine = make()
    engine.set_answer("Q1", "mine", clock.now)  # v1, queued
    engine.set_answer("Q2", "same", clock.now)  # v1, queued; the server has it already
    server.save(engine.next_request(clock.now).body)  # type: ignore[union-attr]  # ack lost
    other = make()
    for value in ("x", "y", "theirs"):
        other.set_answer("Q1", value, clock.now)
    sync(other, server, clock)
    report = engine.receive_restore(server.restore(), clock.now)
    assert report.restored == ("Q1",)
    assert engine.answers["Q1"].value == "theirs" and engine.answers["Q1"].version == 3
    assert not engine.outbox  # Q2's queued v1 is what the server has: nothing left to send
    assert engine.set_answer("Q1", "mine again", clock.now) == 4


def test_an_acknowledged_answer_the_server_lost_is_sent_again() -> None:
    clock, server = Clock(), FakeServer()
    engine = make()
    engine.set_answer("Q1", "a", clock.now)
    engine.set_answer("Q2", "b", clock.now)
    engine.set_answer("Q2", "c", clock.now)
    sync(engine, server, clock)
    del server.answers["Q1"]  # lost entirely
    server.answers["Q2"].version, server.answers["Q2"].value = 1, "b"  # rolled back
    report = engine.receive_restore(server.restore(), clock.now)
    assert report.resent == ("Q1", "Q2")
    assert report.unconfirmed == ("Q1", "Q2")  # receipts said v1 and v2
    assert {c: e.version for c, e in engine.outbox.items()} == {"Q1": 2, "Q2": 3}
    sync(engine, server, clock)
    assert server.state() == {"Q1": (2, "a"), "Q2": (3, "c")}


def test_a_partial_restore_keeps_local_answers_and_says_so() -> None:
    clock, server = Clock(), FakeServer()
    engine = make()
    engine.set_answer("Q1", "a", clock.now)
    engine.set_answer("Q2", "b", clock.now)
    sync(engine, server, clock)
    report = engine.receive_restore(server.restore(missing=("Q2",)), clock.now)
    assert report.partial and report.missing == ("Q2",)
    assert not report.resent and not report.unconfirmed
    assert engine.answers["Q2"].value == "b" and not engine.outbox


def test_a_bad_restore_changes_nothing() -> None:
    clock, server = Clock(), FakeServer()
    storage = MemoryStorage()
    engine = make(storage)
    engine.set_answer("Q1", "a", clock.now)
    sync(engine, server, clock)
    server.answers["Q1"].value = "z"
    server.answers["Q1"].version = 5
    before = storage.load()

    tampered = server.restore()
    tampered["answers"]["Q1"]["value"] = "evil"
    with pytest.raises(ChecksumMismatch):
        engine.receive_restore(tampered, clock.now)

    foreign = server.restore()
    foreign["userId"] = "CAND999"
    foreign["checksum"] = checksum(foreign)
    with pytest.raises(RemoteProtocolError):
        engine.receive_restore(foreign, clock.now)

    with pytest.raises(RemoteProtocolError):
        engine.receive_restore(b"{not json", clock.now)
    assert storage.load() == before
