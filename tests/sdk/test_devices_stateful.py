"""Property: one candidate on several devices, whatever the network and the clocks do, the
candidate's latest edit wins and no device says "saved" for an edit the server did not keep
(issue 14, docs/protocol.md "Several devices").

A hypothesis state machine runs 2 or 3 devices, each an engine on its own store with its own
clock, against the in-test server model (``examsync_fakes.FakeServer``: the rule of
``examsync.edits``). Devices edit a few questions; requests and answers are delayed, reordered,
duplicated and dropped; connections cut; devices crash (a new engine on the same store), sign in
again and restore. No threads and no real time: true time is a number that rules move on.

Devices know about each other. The plan's policy is ``single`` or ``merge``. Every sign-in
activates its device (takeover; a renewal does not), and the server sends each device a
``device_active`` frame, which arrives late, twice, out of order or never. Under ``single``
the server refuses a save from a device other than the active one carrying an edit stamped from
the takeover on; a replaced device keeps such edits, never synced, until it takes over again
(sign in, restore, then told it is active), as ``client.take_over()`` does.

Clocks. Device ``d``'s clock reads true time + ``skew[d]``, with ``|skew| <= SKEW``. The engine
corrects it by the offset it learns from ``serverTime`` (the server's clock is true time):

- at sign-in, a ``serverTime`` read up to ``DELAY`` late: the offset is off by at most DELAY;
- from an ack answered before the request's deadline: its round trip bounds the offset, so
  off by at most ``REQUEST_TIMEOUT / 2`` (the clock keeps what all the bounds seen allow
  together, or the sign-in's value while the bounds allow it: no worse than either);
- from a restore, answered in the same step: exact.

So once signed in (every device is, from its first step), a device stamps each edit within
``RESIDUAL = max(DELAY, REQUEST_TIMEOUT / 2)`` of when it was made. The server orders an edit by
``min(stamp, received)``; ``received`` is not before the edit, so that time too is within
RESIDUAL of the truth. Two edits more than ``2 * RESIDUAL`` apart are thus ordered as they
happened, and the test makes consecutive edits (on any devices) ``GAP > 2 * RESIDUAL`` apart:
"the last edit in real time" is then exact. Closer edits are the rule's documented limit.

The checks: (a) after every device has synced, the server holds, for every question, the value
of the last edit made in true time among the edits it was sent (d) and did not refuse;
(b) whenever a device would report ``synced``, every answer it holds is a version the server
kept at some point, never a value it refused; (c) an edit the server did not keep is reported
as overridden on the device that made it, unless that device edited the answer again later;
(d) an edit never judged was followed by another of its device and question, or is held:
that device is replaced, says so, and holds the edit, stamped from the takeover on; and a
replaced device never sends such an edit.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from examsync_fakes import CANDIDATE, EXAM, PLAN, FakeServer
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from examsync.engine import Engine, EngineConfig, OutboxState
from examsync.events import AnswerOverridden, SyncStatus
from examsync.exceptions import TransportError
from examsync.messages import AckStatus
from examsync.protocol import decode_json, format_timestamp, parse_timestamp
from examsync.storage import MemoryStorage

QUIZZES = ["Q1", "Q1", "Q1", "Q2"]  # mostly one question: conflicts are the point
VALUES = ["", "a", "b", "정답"]
SKEW = 2.0  # seconds a device's clock is off, before correction
DELAY = 1.0  # seconds a sign-in's serverTime may be read late
REQUEST_TIMEOUT = 2.0
RESIDUAL = max(DELAY, REQUEST_TIMEOUT / 2)
GAP = 2 * RESIDUAL + 0.5  # true seconds between consecutive edits
START = 1_704_099_600.0
DEVICE = st.integers(0, 2)  # taken modulo the number of devices
CONFIG = EngineConfig(
    plan_id=PLAN, exam_code=EXAM, candidate_id=CANDIDATE, max_batch=2,
    request_timeout=REQUEST_TIMEOUT,
)  # fmt: skip


@dataclass
class Device:
    name: str
    skew: float
    storage: MemoryStorage = field(default_factory=MemoryStorage)
    generation: int = 0  # bumped by a crash: the old process's answers go nowhere
    lost: set[tuple[str, str]] = field(default_factory=set)  # (quiz, value) said overridden
    inbox: list[dict[str, Any]] = field(default_factory=list)  # device_active frames on the way
    # What the device was told, in the test's own terms: the latest record's order, and the
    # moment it was replaced (None: not replaced).
    heard: tuple[int, str] | None = None
    replaced_ms: int | None = None
    engine: Engine = field(init=False)

    def start(self) -> None:
        self.engine = Engine(CONFIG, self.storage, random.Random(0).random, new_device_id=self.name)


@dataclass(frozen=True)
class Edit:
    at: float  # true time
    device: str
    quiz: str
    value: str
    updated: str  # its stamp


class DevicesMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.true_now = START
        self.server = FakeServer(clock=lambda: self.true_now)
        self.devices: list[Device] = []
        self.requests: list[tuple[int, int, int, bytes]] = []  # device, generation, batch, body
        self.responses: list[tuple[int, int, int, int, Any]] = []  # + status, body
        self.edits: list[Edit] = []
        self.timeline: list[tuple[float, dict[str, str]]] = [(START, {})]  # the server's values
        self.held: dict[tuple[str, str], int] = {}  # (device, quiz) -> the newest version held
        self.healing = False  # the teardown sends and answers by itself

    @initialize(
        skews=st.lists(st.floats(-SKEW, SKEW), min_size=3, max_size=3),
        delays=st.lists(st.floats(0, DELAY), min_size=3, max_size=3),
        policy=st.sampled_from(["single", "merge"]),
    )
    def sign_in_everywhere(self, skews: list[float], delays: list[float], policy: str) -> None:
        self.server.policy = policy
        for i, skew in enumerate(skews):
            device = Device(f"device-{i}", skew)
            device.start()
            self.devices.append(device)
            self._sign_in(i, delays[i])

    # --- helpers ---------------------------------------------------------------------------------

    def now(self, i: int) -> float:
        """What device ``i``'s clock reads."""
        return self.true_now + self.devices[i].skew

    def _drain(self, i: int) -> None:
        """What a driver does after every call: take the events, send what is due."""
        device = self.devices[i]
        for event in device.engine.events_received():
            if isinstance(event, AnswerOverridden):
                device.lost.add((event.quiz_code, event.lost_value))
        if not self.healing:
            request = device.engine.next_request(self.now(i))
            if request is not None:
                self._check_sendable(device, request.body)
                self.requests.append((i, device.generation, request.batch_id, request.body))

    def _check_sendable(self, device: Device, body: bytes) -> None:
        """A device told it was replaced sends no edit made from that moment on, whatever
        takeovers it heard of since (they do not release what waits)."""
        if device.replaced_ms is not None:
            for entry in decode_json(body)["answers"].values():
                assert _ms(entry["updated"]) < device.replaced_ms, (device.name, entry)

    def _hear(self, i: int, active: dict[str, Any], policy: str, since: str | None = None) -> None:
        """Device ``i`` is told ``active`` (a frame, a sign-in's, a refusal's: then ``since``
        is when it was replaced), by the rule of docs/protocol.md: a record gives way to a
        later one only; the first takeover by another device under ``single`` replaces it
        from its ``since`` and later ones do not move that moment; a refusal's earlier
        moment lowers it; a record naming this device (or ``merge``) ends it."""
        device = self.devices[i]
        order = (_ms(active["since"]), active["deviceId"])
        if device.heard is None or order > device.heard:
            device.heard = order
            if active["deviceId"] == device.name or policy == "merge":
                device.replaced_ms = None
            elif device.replaced_ms is None:
                device.replaced_ms = order[0]
        if since is not None and device.replaced_ms is not None and order >= device.heard:
            device.replaced_ms = min(device.replaced_ms, _ms(since))
        if since is None:
            engine = device.engine
            engine.device_active(active["deviceId"], active["since"], policy, self.now(i))

    def _advance(self, seconds: float) -> None:
        self.true_now += seconds
        for i, device in enumerate(self.devices):
            device.engine.tick(self.now(i))
            self._drain(i)

    def _sign_in(self, i: int, delay: float, *, activate: bool = True) -> None:
        """A sign-in (a login activates: a takeover; a renewal does not); its activeDevice
        reaches the engine, and its frame goes out to every device."""
        server_time = format_timestamp(self.true_now - delay)  # read ``delay`` late
        engine = self.devices[i].engine
        engine.observe_server_time(server_time, self.now(i))
        self._tell(i, self._server_signs_in(i, activate))

    def _server_signs_in(self, i: int, activate: bool) -> dict[str, Any]:
        active = self.server.sign_in(self.devices[i].name, activate=activate)["activeDevice"]
        for frame in self.server.device_frames:
            for device in self.devices:
                device.inbox.append(frame)
        self.server.device_frames.clear()
        return dict(active)

    def _tell(self, i: int, active: dict[str, Any]) -> None:
        self._hear(i, active, self.server.policy)

    def _server_saves(self, body: bytes) -> tuple[int, Any]:
        status, answer = self.server.save(body)
        values = {q: a.value for q, a in self.server.answers.items()}
        if values != self.timeline[-1][1]:
            self.timeline.append((self.true_now, values))
        return status, answer

    def _deliver(self, i: int, batch: int, status: int, body: Any) -> None:
        if status == 409 and body["error"]["code"] == "device_replaced":  # noted, then read
            details = body["error"]["details"]
            active = {"deviceId": details["activeDevice"], "since": details["since"]}
            self._hear(i, active, "single", details["replacedSince"])
        self.devices[i].engine.receive_save_response(batch, status, body, self.now(i))
        self._drain(i)

    def _index(self, i: int) -> int:
        return i % len(self.devices)

    # --- the candidate ----------------------------------------------------------------------------

    @rule(i=DEVICE, quiz=st.sampled_from(QUIZZES), value=st.sampled_from(VALUES))
    def edit(self, i: int, quiz: str, value: str) -> None:
        i = self._index(i)
        if self.edits:  # keep edits GAP apart in true time (see the module docstring)
            self._advance(max(0.0, self.edits[-1].at + GAP - self.true_now))
        engine = self.devices[i].engine
        before = engine.answers.get(quiz)
        engine.set_answer(quiz, value, self.now(i))
        self._drain(i)
        if before is None or before.value != value:  # the same value again is no edit
            stamp = engine.answers[quiz].updated
            self.edits.append(Edit(self.true_now, self.devices[i].name, quiz, value, stamp))

    @rule(i=DEVICE, quiz=st.sampled_from(QUIZZES))
    def dismiss(self, i: int, quiz: str) -> None:
        i = self._index(i)
        self.devices[i].engine.dismiss_conflict(quiz, self.now(i))
        self._drain(i)

    # --- the drivers and the network --------------------------------------------------------------

    @rule(i=DEVICE)
    def exchange(self, i: int) -> None:
        """The device's oldest request on the network reaches the server, and its answer comes
        straight back (a healthy network, so that the rarer interleavings around it come up
        often)."""
        i = self._index(i)
        mine = [r for r in self.requests if r[0] == i]
        if mine:
            self.requests.remove(mine[0])
            _, generation, batch, body = mine[0]
            status, answer = self._server_saves(body)
            if generation == self.devices[i].generation:
                self._deliver(i, batch, status, answer)

    @precondition(lambda self: self.requests)
    @rule(data=st.data(), again=st.booleans())
    def server_receives(self, data: st.DataObject, again: bool) -> None:
        index = data.draw(st.integers(0, len(self.requests) - 1))
        i, generation, batch, body = self.requests[index]
        if not again:  # kept: the same request arrives once more later
            self.requests.pop(index)
        status, answer = self._server_saves(body)
        self.responses.append((i, generation, batch, status, answer))

    @precondition(lambda self: self.responses)
    @rule(data=st.data(), again=st.booleans())
    def device_receives(self, data: st.DataObject, again: bool) -> None:
        index = data.draw(st.integers(0, len(self.responses) - 1))
        i, generation, batch, status, body = self.responses[index]
        if not again:
            self.responses.pop(index)
        if generation == self.devices[i].generation:
            self._deliver(i, batch, status, body)

    @precondition(lambda self: self.requests or self.responses)
    @rule(data=st.data())
    def lost_on_the_way(self, data: st.DataObject) -> None:
        """A request or an answer is lost."""
        queues: list[list[Any]] = [q for q in (self.requests, self.responses) if q]
        queue = data.draw(st.sampled_from(queues))
        queue.pop(data.draw(st.integers(0, len(queue) - 1)))

    @rule(i=DEVICE, delivered=st.booleans())
    def transport_error(self, i: int, delivered: bool) -> None:
        """The driver saw an error for the device's newest request; it may still arrive."""
        i = self._index(i)
        mine = [r for r in self.requests if r[:2] == (i, self.devices[i].generation)]
        if not mine:
            return
        if not delivered:
            self.requests.remove(mine[-1])
        self.devices[i].engine.send_failed(mine[-1][2], TransportError("reset"), self.now(i))
        self._drain(i)

    @rule(seconds=st.sampled_from([0.3, 1.0, 2.5, 11.0]))
    def time_passes(self, seconds: float) -> None:
        self._advance(seconds)

    @rule(i=DEVICE)
    def wake_at_deadline(self, i: int) -> None:
        i = self._index(i)
        deadline = self.devices[i].engine.next_deadline()
        if deadline is not None:
            self._advance(max(0.0, deadline - self.now(i)))

    @rule(i=DEVICE, online=st.booleans())
    def connectivity(self, i: int, online: bool) -> None:
        i = self._index(i)
        engine = self.devices[i].engine
        if online:
            engine.connection_restored(self.now(i))
        else:
            engine.connection_lost(self.now(i))
        self._drain(i)

    @rule(i=DEVICE, signs_in=st.booleans(), delay=st.floats(0, DELAY))
    def crash(self, i: int, signs_in: bool, delay: float) -> None:
        """A new process on the same store; offline, it keeps the stored clock offset."""
        i = self._index(i)
        device = self.devices[i]
        device.generation += 1
        device.start()
        if signs_in:
            self._sign_in(i, delay)
        self._drain(i)

    @rule(i=DEVICE)
    def restore(self, i: int) -> None:
        i = self._index(i)
        report = self.devices[i].engine.receive_restore(self.server.restore(), self.now(i))
        self._drain(i)
        assert not report.resent and not report.unconfirmed  # this server never loses anything

    # --- the other devices -----------------------------------------------------------------------

    @rule(i=DEVICE)
    def take_over(self, i: int) -> None:
        """``client.take_over()``: sign in (activating), restore, then the engine is told."""
        i = self._index(i)
        active = self._server_signs_in(i, activate=True)
        self.devices[i].engine.receive_restore(self.server.restore(), self.now(i))
        self._tell(i, active)
        self._drain(i)

    @rule(i=DEVICE, delay=st.floats(0, DELAY))
    def renew(self, i: int, delay: float) -> None:
        """A token renewal (``activate: false``): never a takeover; it may say another device
        is active."""
        i = self._index(i)
        self._sign_in(i, delay, activate=False)
        self._drain(i)

    @rule(i=DEVICE, data=st.data(), again=st.booleans())
    def hears(self, i: int, data: st.DataObject, again: bool) -> None:
        """A ``device_active`` frame reaches the device: any of those on the way, maybe again."""
        i = self._index(i)
        inbox = self.devices[i].inbox
        if inbox:
            index = data.draw(st.integers(0, len(inbox) - 1))
            frame = inbox[index] if again else inbox.pop(index)
            self._hear(i, frame, frame["policy"])
            self._drain(i)

    # --- what must always hold --------------------------------------------------------------------

    @invariant()
    def synced_means_every_answer_is_one_the_server_kept(self) -> None:  # check (b)
        kept = {(code, version, value) for code, version, value in self.server.history}
        for i, device in enumerate(self.devices):
            if device.engine.sync_state(self.now(i)).status is SyncStatus.SYNCED:
                for quiz, answer in device.engine.answers.items():
                    assert (quiz, answer.version, answer.value) in kept, (device.name, answer)

    @invariant()
    def a_device_never_goes_back_to_an_older_server_edit(self) -> None:
        # What a device holds of the server only moves on (the server's versions only rise):
        # a late or repeated answer must not bring back an older value.
        for device in self.devices:
            for quiz, answer in device.engine.answers.items():
                if quiz not in device.engine.outbox:
                    seen = self.held.get((device.name, quiz), 0)
                    assert answer.version >= seen, (device.name, quiz)
                    self.held[(device.name, quiz)] = answer.version

    @invariant()
    def memory_and_storage_agree(self) -> None:
        for device in self.devices:
            snap = device.storage.load()
            assert device.engine.answers == snap.answers
            assert device.engine.outbox == snap.outbox

    @invariant()
    def never_stalls(self) -> None:
        for i, device in enumerate(self.devices):
            engine = device.engine
            if engine.outbox:
                assert engine.state is not OutboxState.IDLE
                if engine.state is OutboxState.HELD:  # waits for a takeover, without retries
                    assert engine.replaced and engine.next_request(self.now(i)) is None
                    assert engine.next_deadline() is None
                elif engine.state is not OutboxState.READY:
                    assert engine.next_deadline() is not None

    @invariant()
    def replaced_only_under_single_and_says_so(self) -> None:
        for i, device in enumerate(self.devices):
            if device.engine.replaced:
                assert self.server.policy == "single"
                assert device.engine.sync_state(self.now(i)).status is SyncStatus.REPLACED

    # --- everyone syncs ---------------------------------------------------------------------------

    def teardown(self) -> None:
        if not self.devices:
            return
        self.healing = True
        self.requests.clear()  # what is still on the network is lost
        self.responses.clear()
        for i, device in enumerate(self.devices):
            engine = device.engine
            for frame in device.inbox:  # every frame arrives now
                self._hear(i, frame, frame["policy"])
            engine.connection_restored(self.now(i))
            for _ in range(100):
                if engine.state in (OutboxState.IDLE, OutboxState.HELD):
                    break
                deadline = engine.next_deadline()
                if deadline is not None and engine.state is not OutboxState.READY:
                    self._advance(max(0.0, deadline - self.now(i)))
                request = engine.next_request(self.now(i))
                if request is not None:
                    self._deliver(i, request.batch_id, *self._server_saves(request.body))
            self._drain(i)
            assert not engine.outbox or engine.replaced, "the outbox did not drain"

        # (d) What never reached the server was followed by another edit of its device and
        # question, or met its value or a later edit in a restore, or is held on a replaced
        # device, stamped from when the server replaced it on.
        judged = {(quiz, device, updated) for quiz, device, updated, _, _ in self.server.verdicts}
        held = [e for e in self.edits if (e.quiz, e.device, e.updated) not in judged]
        for e in held:
            later_here = any(
                o.at > e.at and (o.device, o.quiz) == (e.device, e.quiz) for o in self.edits
            )
            device = next(d for d in self.devices if d.name == e.device)
            # A restore found its value there, or a later edit (the edit was reported lost).
            if later_here or self._held_since(e) or (e.quiz, e.value) in device.lost:
                continue
            replaced_since = self.server.replaced.get(e.device)
            assert device.engine.replaced and replaced_since is not None, e
            assert _ms(e.updated) >= _ms(replaced_since), e
            assert device.engine.outbox[e.quiz].updated == e.updated, e

        # (a) The last edit in true time of each question, among those judged, is what the
        # server keeps.
        last: dict[str, Edit] = {}
        for e in self.edits:
            if e not in held:
                last[e.quiz] = e
        assert {q: a.value for q, a in self.server.answers.items()} == {
            q: e.value for q, e in last.items()
        }

        # (c) Every edit not kept is reported on its device, unless it edited again later.
        kept = {
            (quiz, device, updated)
            for quiz, device, updated, _, status in self.server.verdicts
            if status is not AckStatus.SUPERSEDED
        }
        for e in self.edits:
            if (e.quiz, e.device, e.updated) in kept or e in held or self._held_since(e):
                continue
            later_here = any(
                o.at > e.at and (o.device, o.quiz) == (e.device, e.quiz) for o in self.edits
            )
            device = next(d for d in self.devices if d.name == e.device)
            assert later_here or (e.quiz, e.value) in device.lost, e

        # And a restore brings every device to what the server keeps, synced; a replaced one
        # keeps only its held edits apart, and says it is replaced.
        for i, device in enumerate(self.devices):
            engine = device.engine
            engine.receive_restore(self.server.restore(), self.now(i))
            answers = {q: (a.version, a.value) for q, a in engine.answers.items()}
            waiting = set(engine.outbox)
            assert {q: a for q, a in answers.items() if q not in waiting} == {
                q: a for q, a in self.server.state().items() if q not in waiting
            }
            status = engine.sync_state(self.now(i)).status
            assert status is (SyncStatus.REPLACED if engine.replaced else SyncStatus.SYNCED)
            assert not waiting or engine.replaced

    def _held_since(self, e: Edit) -> bool:
        """Whether the server held ``e``'s value when it was made or later (another edit of
        the same value: the device that drops its own as already there loses nothing)."""
        before = [values for at, values in self.timeline if at <= e.at][-1]
        after = [values for at, values in self.timeline if at > e.at]
        return any(values.get(e.quiz) == e.value for values in [before, *after])


def _ms(stamp: str) -> int:
    return round(parse_timestamp(stamp) * 1000)


DevicesMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=80, deadline=None)
TestDevices = DevicesMachine.TestCase
