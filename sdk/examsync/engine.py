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

Connectivity is a separate flag: while offline nothing is sent; coming back online makes a
waiting retry due at once.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from .backoff import Backoff
from .events import (
    AnswerAcknowledged,
    AnswerSuperseded,
    DeliveryFailure,
    Event,
    RestoreReport,
    SyncState,
    SyncStatus,
)
from .exceptions import (
    ExamSyncError,
    LocalProtocolError,
    RemoteProtocolError,
    StorageError,
    TransportError,
)
from .messages import (
    AckStatus,
    AnswerEntry,
    Behavior,
    Device,
    Metadata,
    NavigationStep,
    Receipt,
    RestoreResponse,
    SaveAck,
    SavePayload,
    read_save_response,
)
from .protocol import canonical_json, decode_json, format_timestamp
from .restore import merge_restore
from .storage import Changes, LocalAnswer, OutboxEntry, Snapshot, Storage

__all__ = ["Engine", "EngineConfig", "OutboxState", "SaveRequest"]


class OutboxState(Enum):
    IDLE = "idle"  # nothing to send
    READY = "ready"  # entries wait and may go now: next_request() returns a batch
    SENDING = "sending"  # one batch is out; wait for its answer or its deadline
    BACKOFF = "backoff"  # the last batch failed; wait until the retry deadline


class _Trigger(Enum):
    QUEUED = "queued"  # the outbox holds entries
    DRAINED = "drained"  # the outbox is empty
    SENT = "sent"
    ANSWERED = "answered"  # the batch in flight was acknowledged (wholly)
    FAILED = "failed"  # the batch in flight failed, timed out, or was acknowledged in part
    RETRY_DUE = "retry due"


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
}

_RECENT_BATCHES = 32  # batches whose late answers are still matched (after a timeout)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    plan_id: str  # examId on the wire
    exam_code: str  # testCode
    candidate_id: str  # userId
    device: Device = Device(type="PC", browser="", os="")
    status: str = "in_progress"
    max_batch: int = 100  # answers per save request
    max_navigation: int = 500  # unacknowledged navigation steps kept (oldest dropped)
    request_timeout: float = 30.0  # a save without an answer by then counts as failed
    backoff: Backoff = field(default_factory=Backoff)

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_navigation < 0 or not self.request_timeout > 0:
            raise ValueError(f"invalid engine config {self!r}")

    @property
    def identity(self) -> str:
        return json.dumps([self.plan_id, self.exam_code, self.candidate_id])


@dataclass(frozen=True, slots=True)
class SaveRequest:
    """A save to send: ``body`` (canonical JSON of ``payload``) to ``POST /api/v1/answers``."""

    batch_id: int
    payload: SavePayload
    body: bytes
    deadline: float


@dataclass(frozen=True, slots=True)
class _Batch:
    batch_id: int
    sent: Mapping[str, tuple[int, str]]  # quiz code -> (version, value)
    navigation_upto: int  # sequence number of the last navigation step carried
    deadline: float


class Engine:
    """Local answer buffer, outbox, versions and restore merge for one candidate and exam."""

    def __init__(self, config: EngineConfig, storage: Storage, rng: Callable[[], float]) -> None:
        """Load what ``storage`` holds (a restart resumes where the last process stopped).

        ``rng`` returns floats uniform in ``[0, 1)`` (``random.random``) for backoff jitter.
        """
        self.config = config
        self._storage = storage
        self._rng = rng
        self._snap = storage.load()
        identity = self._snap.meta.get("identity")
        if identity is None:
            self._commit(Changes(meta={"identity": config.identity}))
        elif identity != config.identity:
            raise StorageError(
                f"storage belongs to {identity}, not {config.identity}", operation="load"
            )
        self._behavior, self._navigation = self._load_behavior(self._snap)
        self._state = OutboxState.IDLE
        self._online = True
        self._attempt = 0
        self._retry_at: float | None = None
        self._in_flight: _Batch | None = None
        self._recent: OrderedDict[int, _Batch] = OrderedDict()
        self._next_batch_id = 1
        self._last_error: ExamSyncError | None = None
        last_ack = self._snap.meta.get("lastAckAt")
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

    def sync_state(self, now: float) -> SyncState:
        oldest = min((e.queued_at for e in self._snap.outbox.values()), default=None)
        return SyncState(
            status=self._status(),
            pending=len(self._snap.outbox),
            oldest_pending_age=None if oldest is None else max(0.0, now - oldest),
            last_ack_at=self._last_ack_at,
            in_flight=self._in_flight is not None,
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
        outbox. A value equal to the current one is not a new version. Raises
        :class:`StorageError` (nothing changed) if storage fails.
        """
        if not isinstance(quiz_code, str) or not quiz_code:
            raise LocalProtocolError(f"invalid quiz code {quiz_code!r}")
        if not isinstance(value, str):
            raise LocalProtocolError(f"answer values are strings, got {type(value).__name__}")
        current = self._snap.answers.get(quiz_code)
        if current is not None and current.value == value:
            return current.version
        version = self._next_version(quiz_code)
        updated = format_timestamp(now)
        previous = self._snap.outbox.get(quiz_code)
        behavior = {**self._behavior, "editCount": self._behavior["editCount"] + 1}
        self._commit(
            Changes(
                answers={quiz_code: LocalAnswer(quiz_code, value, version, updated)},
                outbox_put={
                    quiz_code: OutboxEntry(
                        quiz_code,
                        value,
                        version,
                        updated,
                        queued_at=previous.queued_at if previous else now,
                    )
                },
                version_floors={quiz_code: version},
                meta={"behavior": json.dumps(behavior)},
            )
        )
        self._behavior = behavior
        self._settle(now)
        return version

    def record_navigation(self, from_quiz: str, to_quiz: str, now: float) -> None:
        """Record a move between questions; it rides along with the next save."""
        seq = (self._navigation[-1][0] + 1) if self._navigation else 1
        steps = [
            *self._navigation,
            (seq, NavigationStep(from_quiz, to_quiz, format_timestamp(now))),
        ]
        steps = steps[-self.config.max_navigation :]
        self._commit(Changes(meta={"navigation": _dump_navigation(steps)}))
        self._navigation = steps

    def record_behavior(self, *, focus_ms: int = 0, keystrokes: int = 0) -> None:
        """Add to the focus-time and keystroke totals (call in batches, not per key)."""
        if focus_ms < 0 or keystrokes < 0:
            raise LocalProtocolError("behaviour counters only grow")
        behavior = {
            **self._behavior,
            "focusTime": self._behavior["focusTime"] + focus_ms,
            "keystrokes": self._behavior["keystrokes"] + keystrokes,
        }
        self._commit(Changes(meta={"behavior": json.dumps(behavior)}))
        self._behavior = behavior

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
        entries = entries[: self.config.max_batch]
        payload = SavePayload(
            exam_id=self.config.plan_id,
            test_code=self.config.exam_code,
            user_id=self.config.candidate_id,
            timestamp=format_timestamp(now),
            answers={e.quiz_code: AnswerEntry(e.value, e.version, e.updated) for e in entries},
            metadata=Metadata(
                device=self.config.device,
                behavior=Behavior(
                    focus_time=self._behavior["focusTime"],
                    edit_count=self._behavior["editCount"],
                    keystrokes=self._behavior["keystrokes"],
                    navigation=tuple(step for _, step in self._navigation),
                ),
            ),
            status=self.config.status,
        )
        batch = _Batch(
            batch_id=self._next_batch_id,
            sent={e.quiz_code: (e.version, e.value) for e in entries},
            navigation_upto=self._navigation[-1][0] if self._navigation else 0,
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
        (question, version), so a duplicated, late or reordered answer is harmless. An answer
        that breaks the contract changes nothing and counts as a failed send.
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
        try:
            self._check_ack(batch, ack)
            complete = self._apply_ack(batch, ack, now)
        except ExamSyncError as exc:
            self._fail(batch, exc, now)
            return
        self._last_error = None  # the server is reachable and answering
        if self._in_flight is not None and self._in_flight.batch_id == batch_id:
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
        batch = self._recent.get(batch_id)
        if batch is not None:
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

    def receive_restore(self, body: object, now: float) -> RestoreReport:
        """Merge the server's copy (``GET /api/v1/answers/{exam_code}``) into local state.

        Raises :class:`RemoteProtocolError` (or :class:`ChecksumMismatch`) without changing
        anything if the response is malformed, fails its checksum or is someone else's.
        Per question: an unacknowledged local edit with a higher version wins; otherwise the
        server's answer does, unless the server has less than this device knows it
        acknowledged, in which case the local answer is sent again above it.
        """
        decoded = decode_json(body) if isinstance(body, bytes | str) else body
        response = RestoreResponse.from_wire(decoded)
        expected = (self.config.plan_id, self.config.exam_code, self.config.candidate_id)
        got = (response.exam_id, response.test_code, response.user_id)
        if got != expected:
            raise RemoteProtocolError(f"restore is for {got}, this engine is {expected}")
        changes, report = merge_restore(self._snap, response, now)
        if changes:
            self._commit(changes)
        self._events.append(report)
        self._settle(now)
        return report

    # --- internals -------------------------------------------------------------------------------

    def _next_version(self, quiz_code: str) -> int:
        local = self._snap.answers.get(quiz_code)
        floor = self._snap.version_floors.get(quiz_code, 0)
        return max(floor, local.version if local else 0) + 1

    def _commit(self, changes: Changes) -> None:
        """Write through: storage first, the in-memory mirror only once that succeeded."""
        try:
            self._storage.commit(changes)
        except StorageError:
            raise
        except Exception as exc:  # an adapter bug must not leave the mirror half-updated
            raise StorageError(f"commit failed: {exc!r}", operation="commit") from exc
        self._snap = changes.apply_to(self._snap)

    def _fire(self, trigger: _Trigger) -> None:
        self._state = _TRANSITIONS.get((self._state, trigger), self._state)

    def _settle(self, now: float | None = None) -> None:
        """Bring the state in line with the outbox, then report a changed sync state."""
        self._fire(_Trigger.QUEUED if self._snap.outbox else _Trigger.DRAINED)
        key = (
            self._status(),
            len(self._snap.outbox),
            self._last_ack_at,
            self._in_flight is not None,
        )
        if key != self._reported and now is not None:
            self._reported = key
            self._events.append(self.sync_state(now))

    def _status(self) -> SyncStatus:
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

    def _fail(self, batch: _Batch, error: ExamSyncError, now: float) -> None:
        if self._in_flight is None or self._in_flight.batch_id != batch.batch_id:
            return  # an earlier batch; the one in flight decides the state
        self._in_flight = None
        self._attempt += 1
        self._retry_at = now + self.config.backoff.delay(self._attempt, self._rng())
        self._last_error = error
        self._fire(_Trigger.FAILED)
        self._events.append(DeliveryFailure(batch.batch_id, error, self._attempt, self._retry_at))
        self._settle(now)

    def _check_ack(self, batch: _Batch, ack: SaveAck) -> None:
        """Refuse an ack that is not about what this batch sent (checked before anything)."""
        for code, result in ack.results.items():
            if code not in batch.sent:
                raise RemoteProtocolError("not in the batch", path=f"results.{code}")
            version, value = batch.sent[code]
            if result.version != version:
                raise RemoteProtocolError(
                    f"acknowledges version {result.version}, sent {version}",
                    path=f"results.{code}.version",
                )
            receipt = result.receipt
            if receipt is not None and not receipt.payload.is_for(
                self.config.plan_id,
                self.config.candidate_id,
                self.config.exam_code,
                code,
                version,
                value,
            ):
                raise RemoteProtocolError(
                    "receipt does not match the answer sent", path=f"results.{code}.receipt"
                )

    def _apply_ack(self, batch: _Batch, ack: SaveAck, now: float) -> bool:
        """Commit what ``ack`` says; return whether it covered every answer of the batch."""
        snap = self._snap
        outbox_delete: set[str] = set()
        receipts: dict[str, Receipt] = {}
        floors: dict[str, int] = {}
        events: list[Event] = []
        for code, result in ack.results.items():
            floor = snap.version_floors.get(code, 0)
            if result.current_version > floor:
                floors[code] = result.current_version
            entry = snap.outbox.get(code)
            if entry is not None and entry.version == result.version:
                outbox_delete.add(code)  # exactly this version is now the server's concern
            if result.status is AckStatus.SUPERSEDED:
                local = snap.answers.get(code)
                if local is None or result.current_version >= local.version:
                    events.append(AnswerSuperseded(code, result.version, result.current_version))
                continue
            held = snap.receipts.get(code)
            if result.receipt is not None and (
                held is None or held.payload.version <= result.version
            ):
                receipts[code] = result.receipt
            if code in outbox_delete:
                events.append(
                    AnswerAcknowledged(code, result.version, result.status, result.receipt)
                )
        navigation = [step for step in self._navigation if step[0] > batch.navigation_upto]
        meta = {"lastAckAt": repr(now)}
        if len(navigation) != len(self._navigation):
            meta["navigation"] = _dump_navigation(navigation)
        self._commit(
            Changes(
                outbox_delete=frozenset(outbox_delete),
                receipts=receipts,
                version_floors=floors,
                meta=meta,
            )
        )
        self._navigation = navigation
        self._last_ack_at = now
        self._events.extend(events)
        return set(batch.sent) <= set(ack.results)

    @staticmethod
    def _load_behavior(
        snap: Snapshot,
    ) -> tuple[dict[str, int], list[tuple[int, NavigationStep]]]:
        try:
            behavior = json.loads(snap.meta.get("behavior", "{}"))
            raw_steps = json.loads(snap.meta.get("navigation", "[]"))
            counters = {
                k: int(behavior.get(k, 0)) for k in ("focusTime", "editCount", "keystrokes")
            }
            steps = [
                (int(seq), NavigationStep(str(a), str(b), str(ts))) for seq, a, b, ts in raw_steps
            ]
        except (ValueError, TypeError, AttributeError) as exc:
            raise StorageError(f"stored behaviour is unreadable: {exc}", operation="load") from exc
        return counters, steps


def _dump_navigation(steps: list[tuple[int, NavigationStep]]) -> str:
    rows: list[list[Any]] = [[seq, s.from_quiz, s.to_quiz, s.timestamp] for seq, s in steps]
    return json.dumps(rows, ensure_ascii=False)
