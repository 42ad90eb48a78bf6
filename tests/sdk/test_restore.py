"""The restore merge (examsync.restore), through Engine.receive_restore."""

from __future__ import annotations

import copy
import json

import pytest
from examsync_fakes import CANDIDATE, EXAM, PLAN, Clock, FakeServer, StoredAnswer

from examsync.answers import AnswerState
from examsync.engine import Engine, EngineConfig, OutboxState
from examsync.events import AnswerOverridden, RestoreReport, SyncStatus
from examsync.exceptions import ChecksumMismatch, RemoteProtocolError
from examsync.protocol import checksum, parse_timestamp
from examsync.storage import MemoryStorage, Snapshot

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


def test_a_queued_local_edit_later_than_the_servers_stays_queued() -> None:
    clock, server = Clock(), FakeServer(clock=lambda: clock.now)
    engine = make()
    engine.set_answer("Q1", "a", clock.now)
    engine.set_answer("Q2", "same", clock.now)
    sync(engine, server, clock)
    engine.set_answer("Q1", "b", clock.advance(1))  # not sent yet
    other = make()
    other.set_answer("Q2", "theirs", clock.advance(1))
    sync(other, server, clock)
    engine.set_answer("Q2", "x", clock.advance(1))
    engine.set_answer("Q2", "same", clock.advance(1))  # the same value as before, but later
    report = engine.receive_restore(server.restore(), clock.now)
    assert report.kept_local == ("Q1", "Q2") and not report.restored
    assert (engine.answers["Q1"].value, engine.outbox["Q1"].version) == ("b", 2)
    sync(engine, server, clock)  # both win: Q2's value is older, its edit the latest
    assert server.state() == {"Q1": (2, "b"), "Q2": (3, "same")}


def test_the_merge_orders_edits_by_time_not_version() -> None:
    """Issue 14: a device that knows version 1 edits after another device saved version 2;
    its proposal (2) is not above the server's, yet its edit is the later one."""
    clock, server = Clock(), FakeServer(clock=lambda: clock.now)
    laptop, tablet = make(), make()
    laptop.set_answer("Q1", "1", clock.now)
    sync(laptop, server, clock)
    tablet.receive_restore(server.restore(), clock.now)
    tablet.set_answer("Q1", "2", clock.advance(10))
    sync(tablet, server, clock)
    laptop.set_answer("Q1", "3", clock.advance(10))  # proposes 2; the server holds 2
    report = laptop.receive_restore(server.restore(), clock.now)
    assert report.kept_local == ("Q1",) and laptop.outbox["Q1"].value == "3"
    sync(laptop, server, clock)
    # The other way round: an edit made earlier, proposed far above the server's version, loses.
    stale = make(MemoryStorage(Snapshot(version_floors={"Q1": 50})))
    stale.set_answer("Q1", "stale", clock.now - 60)
    report = stale.receive_restore(server.restore(), clock.now)
    assert report.overridden == ("Q1",) and stale.answers["Q1"].value == "3"


def test_a_queued_edit_earlier_than_the_servers_loses_and_says_so() -> None:
    clock, server = Clock(), FakeServer(clock=lambda: clock.now)
    engine = make()
    engine.set_answer("Q1", "mine", clock.now)  # queued
    engine.set_answer("Q2", "same", clock.now)  # queued; the server has it already
    clock.advance(1)
    server.save(engine.next_request(clock.now).body)  # type: ignore[union-attr]  # ack lost
    other = make()
    for value in ("x", "y", "theirs"):
        other.set_answer("Q1", value, clock.advance(1))
    sync(other, server, clock)
    report = engine.receive_restore(server.restore(), clock.now)
    assert report.restored == report.overridden == ("Q1",)
    assert engine.answers["Q1"].value == "theirs" and engine.answers["Q1"].version == 3
    kept = server.answers["Q1"]
    lost = AnswerOverridden("Q1", "mine", "theirs", 3, kept.updated)
    assert engine.overridden == {"Q1": lost}
    assert [e for e in engine.events_received() if isinstance(e, AnswerOverridden)] == [lost]
    assert not engine.outbox  # Q2's queued edit is what the server has: nothing left to send
    state = engine.sync_state(clock.now)
    assert state.status is SyncStatus.SYNCED and state.overridden == ("Q1",)
    assert {c: (a.version, a.value) for c, a in engine.answers.items()} == server.state()
    assert engine.set_answer("Q1", "mine again", clock.now) == 4


@pytest.mark.parametrize(("theirs", "lost"), [("theirs", True), ("mine", False)])
def test_an_equal_edit_time_counts_as_the_servers_being_later(theirs: str, lost: bool) -> None:
    """The restore does not say which device made the server's edit (the id breaks ties)."""
    clock, server = Clock(), FakeServer(clock=lambda: clock.now)
    engine = make()
    engine.set_answer("Q1", "mine", clock.now)
    stamp = round(parse_timestamp(engine.answers["Q1"].updated) * 1000)
    server.answers["Q1"] = StoredAnswer(theirs, 4, stamp, "tablet")
    report = engine.receive_restore(server.restore(), clock.now)
    assert not engine.outbox and engine.answers["Q1"].value == theirs
    assert report.overridden == (("Q1",) if lost else ())
    assert engine.answer_state("Q1") is (AnswerState.OVERRIDDEN if lost else AnswerState.SYNCED)


def test_an_acknowledged_answer_the_server_lost_is_sent_again() -> None:
    clock, server = Clock(), FakeServer(clock=lambda: clock.now)
    engine = make()
    engine.set_answer("Q1", "a", clock.now)
    engine.set_answer("Q2", "b", clock.now)
    sync(engine, server, clock)
    before = copy.copy(server.answers["Q2"])
    engine.set_answer("Q2", "c", clock.advance(1))
    sync(engine, server, clock)
    del server.answers["Q1"]  # lost entirely
    server.answers["Q2"] = before  # rolled back
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
