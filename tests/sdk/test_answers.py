"""Several devices of one candidate: the latest edit wins, and a device never says "saved" for
an edit the server did not keep (examsync.answers, through the engine)."""

from __future__ import annotations

from typing import Any

from examsync_fakes import CANDIDATE, EXAM, PLAN, Clock, FakeServer

from examsync.answers import ANSWER_TRANSITIONS, AnswerInput, AnswerState
from examsync.engine import Engine, EngineConfig, SaveRequest
from examsync.events import AnswerAcknowledged, AnswerOverridden, SyncState, SyncStatus
from examsync.messages import SavePayload
from examsync.protocol import decode_json, format_timestamp
from examsync.storage import MemoryStorage, Snapshot

CONFIG = EngineConfig(plan_id=PLAN, exam_code=EXAM, candidate_id=CANDIDATE)


class Device:
    """One device: its engine on its own store, sharing the true clock (no skew here)."""

    def __init__(self, name: str, clock: Clock, server: FakeServer) -> None:
        self.name, self.clock, self.server = name, clock, server
        self.storage = MemoryStorage()
        self.engine = self.restart()

    def restart(self) -> Engine:
        self.engine = Engine(CONFIG, self.storage, lambda: 0.5, new_device_id=self.name)
        return self.engine

    def send(self) -> SaveRequest:
        request = self.engine.next_request(self.clock.now)
        assert request is not None
        return request

    def answer(self, request: SaveRequest) -> None:
        status, body = self.server.save(request.body)
        self.engine.receive_save_response(request.batch_id, status, body, self.clock.now)

    def sync(self) -> None:
        self.engine.tick(self.clock.now)  # a retry waiting for its time goes now
        while (request := self.engine.next_request(self.clock.now)) is not None:
            self.answer(request)

    def restore(self) -> None:
        self.engine.receive_restore(self.server.restore(), self.clock.now)

    def holds(self) -> dict[str, tuple[int, str]]:
        return {q: (a.version, a.value) for q, a in self.engine.answers.items()}

    def events(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.engine.events_received() if isinstance(e, kind)]


def pair() -> tuple[Clock, FakeServer, Device, Device]:
    clock = Clock()
    server = FakeServer(clock=lambda: clock.now)
    return clock, server, Device("laptop", clock, server), Device("tablet", clock, server)


def test_the_table_is_total_and_only_a_lost_pending_edit_is_overridden() -> None:
    assert set(ANSWER_TRANSITIONS) == {(s, i) for s in AnswerState for i in AnswerInput}
    into_overridden = {k for k, v in ANSWER_TRANSITIONS.items() if v is AnswerState.OVERRIDDEN}
    assert into_overridden == {
        (AnswerState.PENDING, AnswerInput.TAKEN),
        (AnswerState.OVERRIDDEN, AnswerInput.TAKEN),
    }
    for state in AnswerState:
        assert ANSWER_TRANSITIONS[(state, AnswerInput.EDITED)] is AnswerState.PENDING


def test_the_issue_sequence_ends_with_the_last_edit_on_the_server() -> None:
    """Issue 14: A answers, B restores and changes it, A changes it once more."""
    clock, server, a, b = pair()
    a.engine.set_answer("Q001", "1", clock.now)
    a.sync()
    b.restore()
    b.engine.set_answer("Q001", "2", clock.advance(10))
    b.sync()
    assert a.engine.set_answer("Q001", "3", clock.advance(10)) == 2  # A still knows version 1
    a.sync()
    assert server.state() == {"Q001": (3, "3")}  # the server assigned 3
    assert a.holds() == server.state() and not a.engine.overridden
    assert a.engine.sync_state(clock.now).status is SyncStatus.SYNCED
    assert a.engine.receipts["Q001"].payload.version == 3
    b.restore()
    assert b.holds() == server.state()


def test_an_older_edit_loses_and_its_device_says_so_until_dismissed() -> None:
    clock, server, a, b = pair()
    a.engine.connection_lost(clock.now)
    a.engine.set_answer("Q1", "typed on the laptop", clock.now)  # offline: it waits
    a.engine.set_answer("Q2", "only on the laptop", clock.now)
    b.engine.set_answer("Q1", "typed later on the tablet", clock.advance(30))
    b.sync()
    a.events(object)
    a.engine.connection_restored(clock.advance(30))
    a.sync()

    kept = server.answers["Q1"]
    lost = AnswerOverridden("Q1", "typed on the laptop", kept.value, kept.version, kept.updated)
    assert a.events(AnswerOverridden) == [lost]
    # The truth: nothing waits, and every answer the laptop holds is what the server keeps.
    state = a.engine.sync_state(clock.now)
    assert (state.status, state.pending, state.overridden) == (SyncStatus.SYNCED, 0, ("Q1",))
    assert a.holds() == server.state()
    assert a.engine.answers["Q1"].updated == kept.updated
    assert a.engine.answer_state("Q1") is AnswerState.OVERRIDDEN
    assert a.engine.answer_state("Q2") is AnswerState.SYNCED

    a.restart()  # the conflict is in the store, not only in memory
    assert a.engine.overridden == {"Q1": lost}
    assert a.engine.sync_state(clock.now).overridden == ("Q1",)

    assert a.engine.dismiss_conflict("Q1", clock.now)
    assert not a.engine.dismiss_conflict("Q1", clock.now)
    assert a.engine.answer_state("Q1") is AnswerState.SYNCED
    assert a.events(SyncState)[-1].overridden == ()
    assert a.restart().overridden == {}


def test_editing_an_overridden_answer_again_makes_it_pending_and_it_wins() -> None:
    clock, server, a, b = pair()
    a.engine.connection_lost(clock.now)
    a.engine.set_answer("Q1", "old", clock.now)
    b.engine.set_answer("Q1", "newer", clock.advance(5))
    b.sync()
    a.engine.connection_restored(clock.advance(5))
    a.sync()
    assert a.engine.answer_state("Q1") is AnswerState.OVERRIDDEN
    a.engine.set_answer("Q1", "newest", clock.advance(5))
    assert a.engine.answer_state("Q1") is AnswerState.PENDING and not a.engine.overridden
    a.sync()
    assert server.state()["Q1"][1] == "newest" and a.holds() == server.state()


def test_an_edit_made_after_the_batch_left_stays_queued_and_wins() -> None:
    clock, server, a, b = pair()
    a.engine.set_answer("Q1", "first", clock.now)
    out = a.send()  # on its way while the tablet saves a later edit
    b.engine.set_answer("Q1", "tablet", clock.advance(5))
    b.sync()
    a.engine.set_answer("Q1", "laptop, later", clock.advance(5))
    a.answer(out)  # superseded: but the candidate has edited since
    assert server.verdicts[-1][-1].value == "superseded"
    assert a.engine.answers["Q1"].value == "laptop, later"
    assert a.engine.answer_state("Q1") is AnswerState.PENDING and not a.engine.overridden
    assert a.engine.sync_state(clock.now).status is SyncStatus.PENDING
    a.sync()
    assert server.state()["Q1"][1] == "laptop, later" and a.holds() == server.state()


def test_the_kept_version_is_taken_even_below_the_one_sent() -> None:
    clock = Clock()
    server = FakeServer(clock=lambda: clock.now)
    a = Device("laptop", clock, server)
    b = Device("tablet", clock, server)
    b.engine.set_answer("Q1", "x", clock.now)
    b.sync()  # the server keeps x at version 1
    a.storage = MemoryStorage(Snapshot(version_floors={"Q1": 6}))  # an old store's floor
    a.restart()
    assert a.engine.set_answer("Q1", "x", clock.advance(1)) == 7
    a.sync()  # later, the same value: a duplicate, kept at the server's version
    acks = a.events(AnswerAcknowledged)
    assert [(e.version, e.status.value) for e in acks] == [(1, "duplicate")]
    assert a.holds() == {"Q1": (1, "x")} == server.state()
    assert a.engine.set_answer("Q1", "y", clock.advance(1)) == 2


def test_a_late_ack_for_a_version_proposed_again_does_not_settle_a_newer_edit() -> None:
    """Versions are proposals, so this device may send one twice with different values; an
    ack settles only the edit it answers."""
    clock, server, a, _ = pair()
    a.engine.set_answer("Q1", "x", clock.now)
    a.sync()  # kept at 1
    a.engine.set_answer("Q1", "y", clock.advance(1))  # proposes 2
    stuck = a.send()
    a.engine.tick(clock.advance(60))  # times out; its answer will come late
    a.engine.set_answer("Q1", "x", clock.advance(1))  # proposes 3; back to what is kept
    a.engine.tick(clock.advance(60))
    a.sync()  # a duplicate of version 1: the device takes 1 again
    assert a.holds() == {"Q1": (1, "x")}
    a.engine.set_answer("Q1", "z", clock.advance(1))  # proposes 2 again, another value
    assert a.engine.outbox["Q1"].version == stuck.payload.answers["Q1"].version == 2
    a.answer(stuck)  # y arrives now: older than what is kept, superseded
    assert a.engine.outbox["Q1"].value == "z" and not a.engine.overridden
    a.sync()
    assert server.state()["Q1"][1] == "z" and a.holds() == server.state()


def test_a_stale_ack_does_not_bring_back_an_older_server_value() -> None:
    clock, server, a, b = pair()
    a.engine.set_answer("Q1", "laptop 1", clock.now)
    first = a.send()
    b.engine.set_answer("Q1", "tablet", clock.advance(1))
    b.sync()
    late = server.save(first.body)  # superseded by the tablet's (version 1); its answer is slow
    a.engine.tick(clock.advance(60))  # timed out; the retry is superseded too
    clock.advance(30)  # past the backoff
    a.sync()
    assert a.engine.overridden and a.holds() == server.state()
    a.engine.set_answer("Q1", "laptop 2", clock.advance(1))
    a.sync()
    assert server.state() == {"Q1": (2, "laptop 2")} == a.holds()
    a.engine.receive_save_response(first.batch_id, *late, clock.now)  # the tablet's, at 1
    assert a.holds() == server.state() and not a.engine.outbox


def test_a_save_carries_the_device_id_made_once_per_store() -> None:
    clock, _, a, _ = pair()
    a.engine.set_answer("Q1", "a", clock.now)
    payload = SavePayload.from_wire(decode_json(a.send().body))
    assert payload.metadata.device.id == "laptop" == a.engine.device_id
    again = Engine(CONFIG, a.storage, lambda: 0.5, new_device_id="something else")
    assert again.device_id == "laptop"
    # A store from before devices had ids gets one.
    old = MemoryStorage(Snapshot(meta={"identity": CONFIG.identity}))
    assert Engine(CONFIG, old, lambda: 0.5, new_device_id="fresh").device_id == "fresh"
    assert old.load().meta["deviceId"] == "fresh"


def test_the_offset_to_the_servers_clock_is_learnt_and_kept_offline() -> None:
    clock = Clock()
    ahead = [90.0]  # this device is 90 s behind the server
    server = FakeServer(clock=lambda: clock.now + ahead[0])
    a = Device("laptop", clock, server)
    a.engine.observe_server_time(server.restore()["serverTime"], clock.now)
    a.restart()  # offline: no server time, but the stored offset stands
    a.engine.set_answer("Q1", "a", clock.now)
    assert a.engine.answers["Q1"].updated == format_timestamp(clock.now + 90)
    request = a.send()
    answer = server.save(request.body)  # stamped at once: serverTime = sent + 90
    a.engine.receive_save_response(request.batch_id, *answer, clock.advance(2))
    a.engine.set_answer("Q1", "b", clock.now)
    # The round trip says the offset is between 88 and 90 s: the offset measured before (90)
    # fits and stands. (Its middle, 89, would be 1 s off the truth.)
    assert a.engine.answers["Q1"].updated == format_timestamp(clock.now + 90)
    # An answer after its deadline says nothing about the clock: its round trip is too long.
    # (Taken, it would move the offset: the server's clock was set 100 s forward meanwhile.)
    ahead[0] = 190.0
    request = a.send()
    answer = server.save(request.body)
    a.engine.tick(clock.advance(40))
    a.engine.receive_save_response(request.batch_id, *answer, clock.now)
    assert not a.engine.outbox
    a.engine.set_answer("Q1", "c", clock.now)
    assert a.engine.answers["Q1"].updated == format_timestamp(clock.now + 90)
