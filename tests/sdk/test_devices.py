"""A replaced device (examsync.devices and the engine's HELD state): another device of the
candidate took over under ``single``; this one keeps its edits, sends only what the server
still takes, and says so (docs/protocol.md, "Several devices")."""

from __future__ import annotations

import json
from typing import Any

import pytest
from examsync_fakes import CANDIDATE, EXAM, PLAN, Clock, FakeServer

from examsync.devices import (
    ROLE_TRANSITIONS,
    ActiveDevice,
    DeviceGate,
    Role,
    read_active_device,
    refuses,
    replaced_by,
)
from examsync.engine import Engine, EngineConfig, OutboxState, SaveRequest
from examsync.events import DeliveryFailure, DeviceChanged, SyncStatus
from examsync.exceptions import RemoteProtocolError, ServerError, TransportError
from examsync.protocol import decode_json, format_timestamp
from examsync.storage import MemoryStorage

CONFIG = EngineConfig(plan_id=PLAN, exam_code=EXAM, candidate_id=CANDIDATE)
HERE, OTHER, THIRD = "dev-here", "dev-other", "dev-third"


class Setup:
    """One engine (device HERE) and the server model on one clock."""

    def __init__(self, storage: MemoryStorage | None = None, **server: Any) -> None:
        self.clock = Clock()
        self.storage = storage or MemoryStorage()
        self.server = FakeServer(clock=lambda: self.clock.now, **server)
        self.engine = self.start()
        self.server.sign_in(HERE)

    def start(self) -> Engine:
        return Engine(CONFIG, self.storage, lambda: 0.5, new_device_id=HERE)

    def edit(self, quiz: str, value: str) -> None:
        self.clock.advance(1)
        self.engine.set_answer(quiz, value, self.clock.now)

    def send(self) -> SaveRequest | None:
        return self.engine.next_request(self.clock.now)

    def exchange(self, request: SaveRequest | None = None) -> tuple[int, Any]:
        request = request or self.send()
        assert request is not None
        status, body = self.server.save(request.body)
        self.engine.receive_save_response(request.batch_id, status, body, self.clock.now)
        return status, body

    def take_over_elsewhere(self) -> ActiveDevice:
        self.clock.advance(1)
        self.server.sign_in(OTHER)
        assert self.server.active is not None
        return self.server.active

    def sent_codes(self, request: SaveRequest | None) -> set[str]:
        assert request is not None
        return set(decode_json(request.body)["answers"])

    def status(self) -> SyncStatus:
        return self.engine.sync_state(self.clock.now).status

    def changes(self) -> list[DeviceChanged]:
        return [e for e in self.engine.events_received() if isinstance(e, DeviceChanged)]


# --- the table ------------------------------------------------------------------------------------

SINCE = "2024-01-01T09:00:10.000Z"
CASES = {  # what arrives -> (role from ACTIVE, role from REPLACED), against a known record at SINCE
    "this device, later": (ActiveDevice.of(HERE, "2024-01-01T09:00:20.000Z", "single"), "AA"),
    "another, single, later": (
        ActiveDevice.of(OTHER, "2024-01-01T09:00:20.000Z", "single"),
        "RR",
    ),
    "another, merge, later": (ActiveDevice.of(OTHER, "2024-01-01T09:00:20.000Z", "merge"), "AA"),
    "older than known": (ActiveDevice.of(OTHER, "2024-01-01T09:00:05.000Z", "single"), "AR"),
    "the same record again": (None, "AR"),
}


@pytest.mark.parametrize("case", CASES)
def test_the_role_follows_the_table(case: str) -> None:
    incoming, expected = CASES[case]
    roles = {"A": Role.ACTIVE, "R": Role.REPLACED}
    starts = {
        Role.ACTIVE: DeviceGate(HERE).seen(ActiveDevice.of(HERE, SINCE, "single"))[0],
        Role.REPLACED: DeviceGate(HERE).seen(ActiveDevice.of(OTHER, SINCE, "single"))[0],
    }
    for start, want in zip(starts.values(), expected, strict=True):
        record = incoming or start.record
        assert record is not None
        assert start.seen(record)[0].role is roles[want], (start.role, case)


def test_the_table_is_complete_and_says_what_the_docs_say() -> None:
    # Written out, not derived from the table: every role meets every kind of record.
    expected = {
        ("active", "this device"): "active",
        ("active", "another device, single"): "replaced",
        ("active", "another device, merge"): "active",
        ("active", "older than the record known"): "active",
        ("replaced", "this device"): "active",
        ("replaced", "another device, single"): "replaced",
        ("replaced", "another device, merge"): "active",
        ("replaced", "older than the record known"): "replaced",
    }
    got = {(role.value, seen.value): to.value for (role, seen), to in ROLE_TRANSITIONS.items()}
    assert got == expected


def test_news_only_once_and_not_for_the_first_sign_in_here() -> None:
    gate = DeviceGate(HERE)
    gate, meta, event = gate.seen(ActiveDevice.of(HERE, SINCE, "single"))
    assert event is None and meta  # a sign-in here before any other: no news, but stored
    other = ActiveDevice.of(OTHER, "2024-01-01T09:00:20.000Z", "single")
    gate, _, event = gate.seen(other)
    assert event == DeviceChanged(OTHER, other.since, "single", this_device=False, replaced=True)
    assert gate.seen(other) == (gate, {}, None)  # the same frame again
    back = ActiveDevice.of(HERE, "2024-01-01T09:00:30.000Z", "single")
    assert gate.seen(back)[2] == DeviceChanged(HERE, back.since, "single", True, False)


def test_wire_readers_are_lenient_where_the_field_is_optional() -> None:
    assert read_active_device(None, "single") is None  # an older server
    assert read_active_device({"deviceId": HERE, "since": "soon"}, "single") is None
    got = read_active_device({"deviceId": HERE, "since": SINCE}, "")
    assert got == ActiveDevice.of(HERE, SINCE, "single")
    error = ServerError("x", code="device_replaced", status=409, details={"activeDevice": OTHER})
    assert replaced_by(error) is None  # no since: an ordinary failure
    assert replaced_by(ServerError("x", code="forbidden", status=403)) is None
    with pytest.raises(RemoteProtocolError):
        ActiveDevice.of(HERE, "not a time", "single")


def test_the_servers_check() -> None:
    record = ActiveDevice.of(OTHER, SINCE, "single")
    assert refuses(record, HERE, ["2024-01-01T09:00:09.999Z", SINCE])
    assert not refuses(record, HERE, ["2024-01-01T09:00:09.999Z"])
    assert not refuses(record, OTHER, [SINCE])  # the active device itself
    assert not refuses(record, "", [SINCE])  # no device id: no check
    assert not refuses(ActiveDevice.of(OTHER, SINCE, "merge"), HERE, [SINCE])


def test_a_later_takeover_keeps_the_moment_this_device_was_replaced() -> None:
    s2, s3 = "2024-01-01T09:00:20.000Z", "2024-01-01T09:00:30.000Z"
    gate = DeviceGate(HERE).seen(ActiveDevice.of(HERE, SINCE, "single"))[0]
    gate, meta, _ = gate.seen(ActiveDevice.of(OTHER, s2, "single"))
    assert gate.replaced_since == s2 and json.loads(meta["activeDevice"])[3] == s2
    gate, meta, event = gate.seen(ActiveDevice.of(THIRD, s3, "single"))
    assert gate.replaced_since == s2 and json.loads(meta["activeDevice"]) == [
        THIRD, s3, "single", s2
    ]  # fmt: skip
    assert event == DeviceChanged(THIRD, s3, "single", this_device=False, replaced=True)
    assert DeviceGate.load(meta, HERE) == gate  # a restart keeps it
    # A refusal's earlier moment lowers it (a takeover this device never heard of); a later
    # one, or one naming an older record than known, does not.
    record = ActiveDevice.of(THIRD, s3, "single")
    earlier = "2024-01-01T09:00:15.000Z"
    assert gate.seen(record, "2024-01-01T09:00:25.000Z") == (gate, {}, None)
    assert gate.seen(ActiveDevice.of(OTHER, s2, "single"), earlier)[0] == gate
    lowered, meta, event = gate.seen(record, earlier)
    assert lowered.replaced_since == earlier and event is None
    assert json.loads(meta["activeDevice"])[3] == earlier
    # Active again: cleared.
    back = ActiveDevice.of(HERE, "2024-01-01T09:00:40.000Z", "single")
    assert lowered.seen(back)[0].replaced_since is None


def test_an_entry_stored_without_the_moment_is_replaced_from_its_since() -> None:
    entry = {"activeDevice": json.dumps([OTHER, SINCE, "single"])}  # an older SDK's
    gate = DeviceGate.load(entry, HERE)
    assert gate.replaced and gate.replaced_since == SINCE
    assert DeviceGate.load({"activeDevice": json.dumps([HERE, SINCE, "single"])}, HERE) == (
        DeviceGate(HERE, ActiveDevice.of(HERE, SINCE, "single"))
    )


# --- the engine -----------------------------------------------------------------------------------


def test_a_later_takeover_does_not_release_edits_made_while_replaced() -> None:
    s = Setup()
    record = s.take_over_elsewhere()
    s.engine.device_active(OTHER, record.since, "single", s.clock.now)
    s.edit("Q1", "made while replaced")
    s.clock.advance(1)
    s.server.sign_in(THIRD)  # a third device takes over, after the edit
    assert s.server.active is not None
    s.engine.device_active(THIRD, s.server.active.since, "single", s.clock.now)
    assert s.engine.replaced and s.send() is None  # still waits for "continue here"
    s.engine = s.start()
    assert s.engine.replaced and s.send() is None  # and after a restart
    assert s.server.saves == 0 and s.status() is SyncStatus.REPLACED


def test_a_device_that_missed_its_takeover_learns_the_moment_from_the_refusal() -> None:
    s = Setup()
    s.edit("Q1", "before")
    s.take_over_elsewhere()  # this device never hears of it
    s.edit("Q2", "made while replaced")
    s.clock.advance(1)
    s.server.sign_in(THIRD)
    assert s.server.active is not None
    s.engine.device_active(THIRD, s.server.active.since, "single", s.clock.now)
    request = s.send()
    assert s.sent_codes(request) == {"Q1", "Q2"}  # both before the only takeover it knows
    status, body = s.exchange(request)
    assert status == 409 and body["error"]["details"]["replacedSince"] < s.server.active.since
    request = s.send()
    assert s.sent_codes(request) == {"Q1"}  # Q2 now waits
    assert s.exchange(request)[0] == 200
    assert s.send() is None and s.engine.outbox.keys() == {"Q2"}
    assert s.server.refused == 1 and s.server.state() == {"Q1": (1, "before")}


def test_a_refused_save_makes_the_device_replaced_and_holds_without_retrying() -> None:
    s = Setup()
    s.edit("Q1", "a")
    record = s.take_over_elsewhere()
    s.edit("Q2", "b")  # after the takeover: refused
    s.engine.events_received()
    status, _ = s.exchange()
    assert status == 409 and s.server.refused == 1 and not s.server.answers
    events = s.engine.events_received()
    assert [e for e in events if isinstance(e, DeviceChanged)] == [
        DeviceChanged(OTHER, record.since, "single", this_device=False, replaced=True)
    ]
    assert not any(isinstance(e, DeliveryFailure) for e in events)  # not a failure to retry
    assert s.status() is SyncStatus.REPLACED and s.engine.replaced
    # Q1 was made before the takeover: it goes at once, alone, and is taken.
    request = s.send()
    assert s.sent_codes(request) == {"Q1"}
    assert s.exchange(request)[0] == 200
    assert s.server.state() == {"Q1": (1, "a")}
    # Q2 waits: no request, no deadline, no retry however long.
    assert s.engine.state is OutboxState.HELD and s.engine.next_deadline() is None
    s.clock.advance(3600)
    s.engine.tick(s.clock.now)
    assert s.send() is None and s.server.saves == 2
    assert s.engine.outbox.keys() == {"Q2"} and s.engine.answer_state("Q2").value == "pending"


def test_edits_after_the_takeover_stay_pending_and_are_never_synced() -> None:
    s = Setup()
    s.take_over_elsewhere()
    s.engine.device_active(OTHER, s.server.active.since, "single", s.clock.now)  # type: ignore[union-attr]
    for value in ("a", "b", "c"):
        s.edit("Q1", value)
        assert s.send() is None
        assert s.status() is SyncStatus.REPLACED
    s.engine.connection_lost(s.clock.now)
    assert s.status() is SyncStatus.REPLACED  # outranks offline
    s.engine.connection_restored(s.clock.now)
    assert s.engine.answers["Q1"].value == "c" and s.engine.sync_state(s.clock.now).pending == 1
    assert s.server.saves == 0


def test_this_device_named_active_again_sends_what_waited() -> None:
    s = Setup()
    s.take_over_elsewhere()
    s.edit("Q1", "a")
    assert s.exchange()[0] == 409
    assert [c.replaced for c in s.changes()] == [True]
    s.clock.advance(1)
    fields = s.server.sign_in(HERE)  # the candidate takes over here again
    s.engine.device_active(HERE, fields["activeDevice"]["since"], "single", s.clock.now)
    assert s.changes() == [
        DeviceChanged(HERE, fields["activeDevice"]["since"], "single", True, False)
    ]
    assert not s.engine.replaced and s.engine.state is OutboxState.READY
    assert s.exchange()[0] == 200
    assert s.server.state() == {"Q1": (1, "a")} and s.status() is SyncStatus.SYNCED


def test_late_and_repeated_news_is_harmless() -> None:
    s = Setup()
    s.edit("Q1", "a")
    first = s.take_over_elsewhere()
    stale = s.send()  # sent before this device knew; its refusal comes late
    assert stale is not None
    s.engine.device_active(OTHER, first.since, "single", s.clock.now)
    s.engine.device_active(OTHER, first.since, "single", s.clock.now)  # the poll repeats it
    assert len(s.changes()) == 1
    s.clock.advance(1)
    back = s.server.sign_in(HERE)["activeDevice"]
    s.engine.device_active(HERE, back["since"], "single", s.clock.now)
    s.engine.device_active(OTHER, first.since, "single", s.clock.now)  # replayed late
    refusal = ServerError(
        "r",
        code="device_replaced",
        status=409,
        details={"activeDevice": OTHER, "since": first.since},
    )
    s.engine.receive_save_error(stale.batch_id, refusal, s.clock.now)  # the late refusal
    assert not s.engine.replaced and s.engine.active_device == ActiveDevice.of(
        HERE, back["since"], "single"
    )
    # The refusal still failed its batch: retried after a backoff, and then taken.
    assert s.engine.state is OutboxState.BACKOFF
    s.clock.advance(60)
    s.engine.tick(s.clock.now)
    assert s.exchange()[0] == 200 and s.server.state() == {"Q1": (1, "a")}


def test_a_restart_keeps_the_device_replaced_and_its_edits_waiting() -> None:
    s = Setup()
    s.take_over_elsewhere()
    s.edit("Q1", "a")
    assert s.exchange()[0] == 409
    s.engine = s.start()  # a new process on the same store
    assert s.engine.replaced and s.engine.state is OutboxState.HELD
    assert s.send() is None and s.status() is SyncStatus.REPLACED
    assert s.changes() == []  # nothing new to report
    s.clock.advance(1)
    since = s.server.sign_in(HERE)["activeDevice"]["since"]
    s.engine.device_active(HERE, since, "single", s.clock.now)
    s.engine = s.start()  # and a restart after taking over is not replaced
    assert not s.engine.replaced and s.exchange()[0] == 200


def test_merge_tells_but_refuses_nothing() -> None:
    s = Setup(policy="merge")
    s.take_over_elsewhere()
    s.engine.device_active(OTHER, s.server.active.since, "merge", s.clock.now)  # type: ignore[union-attr]
    assert [c.replaced for c in s.changes()] == [False]
    s.edit("Q1", "a")
    assert s.exchange()[0] == 200 and s.status() is SyncStatus.SYNCED


def test_a_refusal_that_does_not_read_is_an_ordinary_failure() -> None:
    s = Setup()
    s.edit("Q1", "a")
    request = s.send()
    assert request is not None
    body = {"error": {"code": "device_replaced", "message": "m", "details": {}}}
    s.engine.receive_save_response(request.batch_id, 409, json.dumps(body), s.clock.now)
    assert not s.engine.replaced and s.engine.state is OutboxState.BACKOFF


def test_a_transport_error_while_replaced_backs_off_then_holds() -> None:
    s = Setup()
    s.edit("Q1", "a")
    record = s.take_over_elsewhere()
    s.engine.device_active(OTHER, record.since, "single", s.clock.now)
    s.edit("Q2", "b")
    request = s.send()
    assert s.sent_codes(request) == {"Q1"}
    assert request is not None
    s.engine.send_failed(request.batch_id, TransportError("reset"), s.clock.now)
    assert s.engine.state is OutboxState.BACKOFF and s.status() is SyncStatus.REPLACED
    s.clock.advance(60)
    s.engine.tick(s.clock.now)
    s.exchange()
    assert s.engine.state is OutboxState.HELD and s.engine.outbox.keys() == {"Q2"}


def test_an_unreadable_since_changes_nothing() -> None:
    s = Setup()
    with pytest.raises(RemoteProtocolError):
        s.engine.device_active(OTHER, "yesterday", "single", s.clock.now)
    assert not s.engine.replaced and s.engine.active_device is None
    assert format_timestamp(s.clock.now)  # the clock still reads
