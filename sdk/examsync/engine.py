"""The sans-I/O sync engine: one candidate, one exam code.

It does no I/O and reads no clock and no randomness of its own: a driver (the CPython or
Pyodide adapter, or a test) passes ``now`` (seconds since the epoch, the same clock for every
call) and sends what :meth:`Engine.next_request` returns. The loop a driver runs::

    engine.set_answer("Q001", "3", now)          # durable before it returns
    while True:
        request = engine.next_request(now)       # None: nothing to send now
        if request: send it; later call receive_save_response(...) or send_failed(...)
        handle engine.events_received()
        sleep until engine.next_deadline() (then engine.tick(now)), a response, or a new edit

The outbox state machine (everything that moves it is in ``_TRANSITIONS``)::

    IDLE --queued--> READY --sent--> SENDING --answered--> READY --drained--> IDLE
                       ^                |
                       |              failed (error, timeout)
                       |                v
                       +--retry due-- BACKOFF          (retry due: deadline, or reconnect)
    READY --held--> HELD --released--> READY;  HELD --drained--> IDLE

Connectivity is a separate flag: while offline nothing is sent; coming back online makes a
waiting retry due at once. HELD: this device was replaced by another (``devices.py``, its
table) and every entry is an edit the server would refuse: nothing to send, no retry.

Each answer has its own state, ``synced``, ``pending`` or ``overridden`` (``answers.py``: the
table, and what an ack does to an answer). Edits are stamped on the server's clock by an
``edits.EditClock`` that learns the offset from every ``serverTime`` the server sends (acks and
restores here; the sign-in and socket welcomes through :meth:`Engine.observe_server_time`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import replace
from enum import Enum

from . import _meta
from .activity import Activity
from .answers import (
    OVERRIDDEN_KEY,
    AnswerState,
    AnswerUpdates,
    SentEdit,
    answer_state,
    check_ack,
    load_overridden,
)
from .devices import ActiveDevice, DeviceGate, replaced_by, replaced_since_of
from .edits import EditClock
from .events import AnswerOverridden, DeliveryFailure, Event, RestoreReport, SyncState, SyncStatus
from .exceptions import (
    ExamSyncError,
    LocalProtocolError,
    RemoteProtocolError,
    StorageError,
    TransportError,
)
from .messages import (
    AnswerEntry,
    Metadata,
    NavigationStep,
    Receipt,
    RestoreResponse,
    SaveAck,
    SavePayload,
    read_save_response,
)
from .outbox import Batch, EngineConfig, SaveRequest
from .protocol import canonical_json, decode_json, format_timestamp
from .restore import merge_restore
from .storage import Changes, LocalAnswer, OutboxEntry, Storage

__all__ = ["Engine", "EngineConfig", "OutboxState", "SaveRequest"]


class OutboxState(Enum):
    IDLE = "idle"  # nothing to send
    READY = "ready"  # entries wait and may go now: next_request() returns a batch
    SENDING = "sending"  # one batch is out; wait for its answer or its deadline
    BACKOFF = "backoff"  # the last batch failed; wait until the retry deadline
    HELD = "held"  # entries wait for this device to take over again (devices.py)


class _Trigger(Enum):
    QUEUED = "queued"  # the outbox holds entries
    DRAINED = "drained"  # the outbox is empty
    SENT = "sent"
    ANSWERED = "answered"  # the batch in flight was acknowledged (wholly)
    FAILED = "failed"  # the batch in flight failed, timed out, or was acknowledged in part
    RETRY_DUE = "retry due"
    HELD = "held"  # every entry waits: another device took over (devices.DeviceGate)
    RELEASED = "released"  # some entry may go again


# Every state change of the outbox. A pair that is not listed leaves the state as it is
# (an edit while SENDING or BACKOFF waits for the batch or the retry already under way).
_TRANSITIONS: Mapping[tuple[OutboxState, _Trigger], OutboxState] = {
    (OutboxState.IDLE, _Trigger.QUEUED): OutboxState.READY,
    (OutboxState.READY, _Trigger.DRAINED): OutboxState.IDLE,
    (OutboxState.READY, _Trigger.SENT): OutboxState.SENDING,
    (OutboxState.SENDING, _Trigger.ANSWERED): OutboxState.READY,
    (OutboxState.SENDING, _Trigger.FAILED): OutboxState.BACKOFF,
    (OutboxState.BACKOFF, _Trigger.RETRY_DUE): OutboxState.READY,
    (OutboxState.BACKOFF, _Trigger.DRAINED): OutboxState.IDLE,
    (OutboxState.READY, _Trigger.HELD): OutboxState.HELD,
    (OutboxState.HELD, _Trigger.RELEASED): OutboxState.READY,
    (OutboxState.HELD, _Trigger.DRAINED): OutboxState.IDLE,
}

_RECENT_BATCHES = 32  # batches whose late answers are still matched (after a timeout)


class Engine:
    """Local answer buffer, outbox, versions and restore merge for one candidate and exam."""

    def __init__(
        self,
        config: EngineConfig,
        storage: Storage,
        rng: Callable[[], float],
        *,
        new_device_id: str = "",
    ) -> None:
        """Load what ``storage`` holds (a restart resumes where the last process stopped).

        ``rng`` returns floats uniform in ``[0, 1)`` (``random.random``) for backoff jitter.
        ``new_device_id`` (a driver passes a fresh ``uuid4().hex``) becomes this device's id
        if the store has none yet; a store keeps its id for good.
        """
        self.config = config
        self._storage = storage
        self._rng = rng
        self._snap = storage.load()
        first = _meta.first_entries(
            self._snap.meta, config.identity, new_device_id or config.device.id
        )
        if first:
            self._commit(Changes(meta=first))
        self._device = replace(config.device, id=self._snap.meta.get(_meta.DEVICE_ID, ""))
        self._edit_clock = _meta.load_clock(self._snap.meta)
        self._overridden = load_overridden(self._snap.meta)
        self._activity = Activity.load(self._snap.meta)
        self._gate = DeviceGate.load(self._snap.meta, self._device.id)
        self._state = OutboxState.IDLE
        self._online = True
        self._attempt = 0
        self._retry_at: float | None = None
        self._in_flight: Batch | None = None
        self._recent: OrderedDict[int, Batch] = OrderedDict()
        self._next_batch_id = 1
        self._last_error: ExamSyncError | None = None
        last_ack = self._snap.meta.get(_meta.LAST_ACK_AT)
        self._last_ack_at = float(last_ack) if last_ack is not None else None
        self._last_now: float | None = None
        self._events: list[Event] = []
        self._reported: tuple[object, ...] | None = None
        self._settle()

    # --- reading state ---------------------------------------------------------------------------

    @property
    def state(self) -> OutboxState:
        return self._state

    @property
    def online(self) -> bool:
        return self._online

    @property
    def answers(self) -> Mapping[str, LocalAnswer]:
        """The candidate's answers as this device has them (what the screen shows)."""
        return self._snap.answers

    @property
    def outbox(self) -> Mapping[str, OutboxEntry]:
        """Answer versions not yet acknowledged, by question code."""
        return self._snap.outbox

    @property
    def receipts(self) -> Mapping[str, Receipt]:
        """The latest signed receipt per question code."""
        return self._snap.receipts

    @property
    def device_id(self) -> str:
        """This device's id, kept in its store (sent as ``metadata.device.id``)."""
        return self._device.id

    @property
    def overridden(self) -> Mapping[str, AnswerOverridden]:
        """The answers whose edit here the server did not keep, by question code, until
        dismissed (:meth:`dismiss_conflict`) or edited again."""
        return self._overridden

    @property
    def active_device(self) -> ActiveDevice | None:
        """The candidate's active device as last heard (None: nothing heard yet)."""
        return self._gate.record

    @property
    def replaced(self) -> bool:
        """Another device took over under ``single``: edits made since then wait here."""
        return self._gate.replaced

    def answer_state(self, quiz_code: str) -> AnswerState:
        return answer_state(self._snap, self._overridden, quiz_code)

    def sync_state(self, now: float) -> SyncState:
        oldest = min((e.queued_at for e in self._snap.outbox.values()), default=None)
        return SyncState(
            status=self._status(),
            pending=len(self._snap.outbox),
            oldest_pending_age=None if oldest is None else max(0.0, now - oldest),
            last_ack_at=self._last_ack_at,
            in_flight=self._in_flight is not None,
            overridden=tuple(sorted(self._overridden)),
        )

    def events_received(self) -> list[Event]:
        """Events since the last call, oldest first. Call after every other method."""
        events, self._events = self._events, []
        return events

    def next_deadline(self) -> float | None:
        """When :meth:`tick` must be called next (None: only a new input can change things)."""
        if self._state is OutboxState.SENDING and self._in_flight is not None:
            return self._in_flight.deadline
        if self._state is OutboxState.BACKOFF:
            return self._retry_at
        return None

    # --- local input -----------------------------------------------------------------------------

    def set_answer(self, quiz_code: str, value: str, now: float) -> int:
        """Record the candidate's answer durably and queue it; return its version.

        When this returns, the answer is in local storage (it survives a crash) and in the
        outbox, stamped with the time of the edit on the server's clock. A value equal to the
        current one is not a new edit. Raises :class:`StorageError` (nothing changed) if
        storage fails.
        """
        if not isinstance(quiz_code, str) or not quiz_code:
            raise LocalProtocolError(f"invalid quiz code {quiz_code!r}")
        if not isinstance(value, str):
            raise LocalProtocolError(f"answer values are strings, got {type(value).__name__}")
        current = self._snap.answers.get(quiz_code)
        if current is not None and current.value == value:
            return current.version
        version = self._next_version(quiz_code)
        clock = replace(self._edit_clock)
        updated = clock.stamp(now)
        previous = self._snap.outbox.get(quiz_code)
        activity, meta = self._activity.counted(editCount=1)
        updates = AnswerUpdates(self._snap, self._overridden)
        updates.queue(
            LocalAnswer(quiz_code, value, version, updated),
            queued_at=previous.queued_at if previous else now,
        )
        self._commit(updates.changes({**meta, _meta.EDIT_CLOCK: _meta.dump_clock(clock)}))
        self._activity, self._edit_clock = activity, clock
        self._settle(now)
        return version

    def dismiss_conflict(self, quiz_code: str, now: float) -> bool:
        """The page has shown that ``quiz_code`` was overridden: the answer is ``synced``
        again. Returns whether it was overridden."""
        updates = AnswerUpdates(self._snap, self._overridden)
        if not updates.dismiss(quiz_code):
            return False
        self._commit(updates.changes())
        self._settle(now)
        return True

    def record_navigation(self, from_quiz: str, to_quiz: str, now: float) -> None:
        """Record a move between questions; it rides along with the next save."""
        step = NavigationStep(from_quiz, to_quiz, format_timestamp(now))
        activity, meta = self._activity.moved(step, self.config.max_navigation)
        self._commit(Changes(meta=meta))
        self._activity = activity

    def record_behavior(self, *, focus_ms: int = 0, keystrokes: int = 0) -> None:
        """Add to the focus-time and keystroke totals (call in batches, not per key)."""
        if focus_ms < 0 or keystrokes < 0:
            raise LocalProtocolError("behaviour counters only grow")
        activity, meta = self._activity.counted(focusTime=focus_ms, keystrokes=keystrokes)
        self._commit(Changes(meta=meta))
        self._activity = activity

    # --- sending ---------------------------------------------------------------------------------

    def next_request(self, now: float) -> SaveRequest | None:
        """The next save to send, or None (nothing pending, one already out, waiting, offline).

        At most one save is out at a time, so the engine never sends a version again while an
        earlier send of it is still awaited.
        """
        self._observe_clock(now)
        if self._state is not OutboxState.READY or not self._online:
            return None
        entries = sorted(self._snap.outbox.values(), key=lambda e: (e.queued_at, e.quiz_code))
        entries = self._gate.sendable(entries)[: self.config.max_batch]
        if not entries:
            return None
        payload = SavePayload(
            exam_id=self.config.plan_id,
            test_code=self.config.exam_code,
            user_id=self.config.candidate_id,
            timestamp=format_timestamp(now),
            answers={e.quiz_code: AnswerEntry(e.value, e.version, e.updated) for e in entries},
            metadata=Metadata(
                device=self._device,
                behavior=self._activity.behavior(),
            ),
            status=self.config.status,
        )
        batch = Batch(
            batch_id=self._next_batch_id,
            sent={e.quiz_code: SentEdit.of(e) for e in entries},
            navigation_upto=self._activity.last_step,
            sent_at=now,
            deadline=now + self.config.request_timeout,
        )
        self._next_batch_id += 1
        self._in_flight = batch
        self._recent[batch.batch_id] = batch
        while len(self._recent) > _RECENT_BATCHES:
            self._recent.popitem(last=False)
        self._fire(_Trigger.SENT)
        self._settle(now)
        return SaveRequest(
            batch.batch_id, payload, canonical_json(payload.to_wire()), batch.deadline
        )

    def receive_save_response(self, batch_id: int, status: int, body: object, now: float) -> None:
        """Feed the server's answer to save ``batch_id``: HTTP ``status`` and its body.

        ``body`` is the raw bytes/str or the decoded JSON. Acknowledgements are matched by
        the edit sent (question, version, stamp), so a duplicated, late or reordered answer is
        harmless. An answer that breaks the contract changes nothing and counts as a failed
        send.
        """
        try:
            ack = read_save_response(status, body)
        except ExamSyncError as exc:
            self.receive_save_error(batch_id, exc, now)
            return
        self.receive_save_ack(batch_id, ack, now)

    def receive_save_ack(self, batch_id: int, ack: SaveAck, now: float) -> None:
        """As :meth:`receive_save_response`, for an ack already read
        (:func:`~examsync.messages.read_save_response`): a driver that checks the receipts
        first hands on what it read."""
        self._observe_clock(now)
        batch = self._recent.get(batch_id)
        if batch is None:
            return  # too old to match, or never ours: nothing in it can be trusted
        flight = self._in_flight
        in_flight = flight is not None and flight.batch_id == batch_id
        # Only an answer in time tells the server's clock: a late one's round trip is long.
        on_time = in_flight and flight is not None and batch.sent_at <= now < flight.deadline
        try:
            check_ack(self._identity, batch.sent, ack)
            clock = None
            if on_time:
                clock = _meta.observed(self._edit_clock, ack.server_time, now, batch.sent_at)
            complete = self._apply_ack(batch, ack, now, clock)
        except ExamSyncError as exc:
            self._fail(batch, exc, now)
            return
        self._last_error = None  # the server is reachable and answering
        if in_flight:
            if complete:
                self._in_flight = None
                self._attempt = 0
                self._fire(_Trigger.ANSWERED)
            else:  # the server skipped some answers: do not resend them in a tight loop
                self._fail(batch, RemoteProtocolError("the ack left answers out"), now)
        self._settle(now)

    def receive_save_error(self, batch_id: int, error: ExamSyncError, now: float) -> None:
        """The server answered save ``batch_id`` with an error, or with an ack that does not
        read (what :func:`~examsync.messages.read_save_response` raised): a failed send whose
        batch may still be acknowledged by a later answer."""
        self._observe_clock(now)
        batch, takeover = self._recent.get(batch_id), replaced_by(error)
        if takeover is not None:
            since = replaced_since_of(error)
            self.device_active(takeover.device_id, takeover.since, takeover.policy, now, since)
        if batch is None:
            return
        flight = self._in_flight
        if takeover and self._gate.replaced and flight and flight.batch_id == batch_id:
            # Refused whole, nothing stored: what may still go goes now, without a backoff.
            self._in_flight = None
            self._fire(_Trigger.ANSWERED)
            self._settle(now)
        else:
            self._fail(batch, error, now)

    def send_failed(self, batch_id: int, error: ExamSyncError, now: float) -> None:
        """The driver could not get an answer for ``batch_id`` (network error, closed socket)."""
        self._observe_clock(now)
        batch = self._recent.pop(batch_id, None)
        if batch is not None:
            self._fail(batch, error, now)

    # --- time and connectivity -------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Let time pass: time out the batch in flight, make a due retry ready."""
        self._observe_clock(now)
        if self._in_flight is not None and now >= self._in_flight.deadline:
            # Keep it in _recent: a late answer to it still acknowledges what it carried.
            self._fail(self._in_flight, TransportError("save timed out", timeout=True), now)
        if self._state is OutboxState.BACKOFF and (self._retry_at is None or now >= self._retry_at):
            self._retry_at = None
            self._fire(_Trigger.RETRY_DUE)
        self._settle(now)

    def connection_lost(self, now: float) -> None:
        """No transport can reach the server: hold sends (the outbox keeps everything)."""
        self._online = False
        self._settle(now)

    def connection_restored(self, now: float) -> None:
        """A transport is back: a waiting retry goes at once, with a fresh backoff."""
        self._online = True
        self._attempt = 0
        if self._state is OutboxState.BACKOFF:
            self._retry_at = None
            self._fire(_Trigger.RETRY_DUE)
        self._settle(now)

    # --- restore ---------------------------------------------------------------------------------

    def receive_restore(
        self, body: object, now: float, *, sent_at: float | None = None
    ) -> RestoreReport:
        """Merge the server's copy (``GET /api/v1/answers/{exam_code}``) into local state.

        Raises :class:`RemoteProtocolError` (or :class:`ChecksumMismatch`) without changing
        anything if the response is malformed, fails its checksum or is someone else's.
        Per question (``restore.merge_restore``): a queued local edit made later than the
        server's stays queued; an earlier one loses (the answer is overridden); the server's
        answer is taken, unless the server has less than this device knows it acknowledged,
        in which case the local answer is sent again. ``sent_at``: when the request left (its
        ``serverTime`` then sets the edit clock as an ack's does).
        """
        decoded = decode_json(body) if isinstance(body, bytes | str) else body
        response = RestoreResponse.from_wire(decoded)
        expected = (self.config.plan_id, self.config.exam_code, self.config.candidate_id)
        got = (response.exam_id, response.test_code, response.user_id)
        if got != expected:
            raise RemoteProtocolError(f"restore is for {got}, this engine is {expected}")
        clock = _meta.observed(self._edit_clock, response.server_time, now, sent_at)
        changes, report, events = merge_restore(self._snap, response, now)
        self._commit(changes.then(Changes(meta={_meta.EDIT_CLOCK: _meta.dump_clock(clock)})))
        self._edit_clock = clock
        self._events.extend([*events, report])
        self._settle(now)
        return report

    # --- other devices -------------------------------------------------------------------------

    def device_active(
        self, device_id: str, since: str, policy: str, now: float, replaced_since: str | None = None
    ) -> None:
        """The server says ``device_id`` is the candidate's active device from ``since`` (a
        ``device_active`` frame, a sign-in's ``activeDevice``, a refusal, which may add when
        this device was replaced): this device is replaced or active again (``devices.py``).
        Late, repeated or reordered news changes nothing. RemoteProtocolError (nothing
        changed) if ``since`` or ``replaced_since`` is no timestamp."""
        record = ActiveDevice.of(device_id, since, policy)
        gate, meta, event = self._gate.seen(record, replaced_since)
        if meta:
            self._commit(Changes(meta=meta))
        self._gate = gate
        self._events.extend([event] if event else [])
        self._settle(now)

    # --- the server's clock ----------------------------------------------------------------------

    def observe_server_time(
        self, server_time: str, now: float, *, sent_at: float | None = None
    ) -> None:
        """A ``serverTime`` the server sent (the sign-in's, a socket welcome's) at about
        ``now``: this device's edits are stamped on the server's clock from now on, and the
        offset is stored (a restart, even offline, keeps it). ``sent_at``: when the request it
        answers left; the middle of the round trip is the better guess. Acks and restores
        call this themselves. Raises :class:`RemoteProtocolError` (nothing changed) if
        ``server_time`` is no timestamp."""
        clock = _meta.observed(self._edit_clock, server_time, now, sent_at)
        self._commit(Changes(meta={_meta.EDIT_CLOCK: _meta.dump_clock(clock)}))
        self._edit_clock = clock

    # --- internals -------------------------------------------------------------------------------

    def _next_version(self, quiz_code: str) -> int:
        local = self._snap.answers.get(quiz_code)
        floor = self._snap.version_floors.get(quiz_code, 0)
        return max(floor, local.version if local else 0) + 1

    @property
    def _identity(self) -> tuple[str, str, str]:
        return (self.config.plan_id, self.config.candidate_id, self.config.exam_code)

    def _commit(self, changes: Changes) -> None:
        """Write through: storage first, the in-memory mirror only once that succeeded."""
        try:
            self._storage.commit(changes)
        except StorageError:
            raise
        except Exception as exc:  # an adapter bug must not leave the mirror half-updated
            raise StorageError(f"commit failed: {exc!r}", operation="commit") from exc
        self._snap = changes.apply_to(self._snap)
        if OVERRIDDEN_KEY in changes.meta:
            self._overridden = load_overridden(self._snap.meta)

    def _fire(self, trigger: _Trigger) -> None:
        self._state = _TRANSITIONS.get((self._state, trigger), self._state)

    def _settle(self, now: float | None = None) -> None:
        """Bring the state in line with the outbox, then report a changed sync state."""
        self._fire(_Trigger.QUEUED if self._snap.outbox else _Trigger.DRAINED)
        held = bool(self._snap.outbox) and not self._gate.sendable(self._snap.outbox.values())
        self._fire(_Trigger.HELD if held else _Trigger.RELEASED)
        key = (
            self._status(),
            len(self._snap.outbox),
            self._last_ack_at,
            self._in_flight is not None,
            tuple(self._overridden),
        )
        if key != self._reported and now is not None:
            self._reported = key
            self._events.append(self.sync_state(now))

    def _status(self) -> SyncStatus:
        if self._gate.replaced:
            return SyncStatus.REPLACED
        if not self._online:
            return SyncStatus.OFFLINE
        if not self._snap.outbox:
            return SyncStatus.SYNCED
        if isinstance(self._last_error, TransportError):
            return SyncStatus.OFFLINE
        if self._last_error is not None:
            return SyncStatus.ERROR
        return SyncStatus.PENDING

    def _observe_clock(self, now: float) -> None:
        # A wall clock can jump back (NTP, the user). Deadlines set before the jump would then
        # lie far ahead: rather than stall, make a waiting retry due now.
        if self._last_now is not None and now < self._last_now:
            if self._retry_at is not None:
                self._retry_at = now
            if self._in_flight is not None:
                deadline = now + self.config.request_timeout
                self._in_flight = replace(self._in_flight, deadline=deadline)
        self._last_now = now

    def _fail(self, batch: Batch, error: ExamSyncError, now: float) -> None:
        if self._in_flight is None or self._in_flight.batch_id != batch.batch_id:
            return  # an earlier batch; the one in flight decides the state
        self._in_flight = None
        self._attempt += 1
        self._retry_at = now + self.config.backoff.delay(self._attempt, self._rng())
        self._last_error = error
        self._fire(_Trigger.FAILED)
        self._events.append(DeliveryFailure(batch.batch_id, error, self._attempt, self._retry_at))
        self._settle(now)

    def _apply_ack(self, batch: Batch, ack: SaveAck, now: float, clock: EditClock | None) -> bool:
        """Commit what ``ack`` says (checked); return whether it covered the whole batch."""
        updates = AnswerUpdates(self._snap, self._overridden)
        for code, result in ack.results.items():
            updates.ack(code, batch.sent[code], result)
        activity, meta = self._activity.carried(batch.navigation_upto)
        meta[_meta.LAST_ACK_AT] = repr(now)
        if clock is not None:
            meta[_meta.EDIT_CLOCK] = _meta.dump_clock(clock)
        self._commit(updates.changes(meta))
        self._activity = activity
        self._last_ack_at = now
        self._edit_clock = clock or self._edit_clock
        self._events.extend(updates.events)
        return set(batch.sent) <= set(ack.results)
