"""Each answer's state on this device, and the per-answer rules of acks (docs/protocol.md, "On
the device: an answer is synced, pending or overridden").

The outbox machine (``engine._TRANSITIONS``) says when to send; this table says what an answer
is once the server has judged it::

    synced --edit--> pending --acked--> synced
      ^                 |
      |        superseded, or a restore with a later edit: the server's edit is taken
      |                 v
      +--dismissed-- overridden --edit--> pending

An answer is ``pending`` while its edit is in the outbox, ``overridden`` while the store keeps
the record of an edit of this device that the server did not keep (an
:class:`~examsync.events.AnswerOverridden`, in the store's meta), ``synced`` otherwise: then the
device holds an edit the server keeps. :class:`AnswerUpdates` gathers what one operation (an
edit, an ack, a restore, a dismissal) does to answers, through the table, into one commit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import Enum
from typing import NamedTuple

from .events import AnswerAcknowledged, AnswerOverridden, Event
from .exceptions import RemoteProtocolError, StorageError
from .messages import AckStatus, AnswerResult, Receipt, SaveAck
from .storage import Changes, LocalAnswer, OutboxEntry, Snapshot

__all__ = [
    "ANSWER_TRANSITIONS",
    "AnswerInput",
    "AnswerState",
    "AnswerUpdates",
    "SentEdit",
    "answer_state",
    "check_ack",
    "load_overridden",
]

OVERRIDDEN_KEY = "overridden"  # the store's meta key holding the records, as one JSON object


class AnswerState(Enum):
    SYNCED = "synced"  # the device holds what the server keeps (or nothing was answered)
    PENDING = "pending"  # an edit of this device waits in the outbox
    OVERRIDDEN = "overridden"  # an edit of this device lost; the device holds the server's


class AnswerInput(Enum):
    EDITED = "edited"  # the candidate edits (or the device resends what the server lost)
    ACKED = "acked"  # the server keeps this device's edit (accepted, duplicate)
    TAKEN = "taken"  # the device takes the server's later edit (superseded, a restore)
    DISMISSED = "dismissed"  # the page has shown the conflict


_S, _P, _O = AnswerState.SYNCED, AnswerState.PENDING, AnswerState.OVERRIDDEN

# Every answer state change. Total: a pair the rules name nowhere keeps its state, written out.
ANSWER_TRANSITIONS: Mapping[tuple[AnswerState, AnswerInput], AnswerState] = {
    (_S, AnswerInput.EDITED): _P,
    (_S, AnswerInput.ACKED): _S,  # a late ack: the server's newer version of this edit
    (_S, AnswerInput.TAKEN): _S,  # this device's edit was kept, then a later one replaced it
    (_S, AnswerInput.DISMISSED): _S,
    (_P, AnswerInput.EDITED): _P,
    (_P, AnswerInput.ACKED): _S,
    (_P, AnswerInput.TAKEN): _O,
    (_P, AnswerInput.DISMISSED): _P,
    (_O, AnswerInput.EDITED): _P,
    (_O, AnswerInput.ACKED): _S,  # a late ack: the server kept this device's edit after all
    (_O, AnswerInput.TAKEN): _O,  # still lost; the record names the server's newest edit
    (_O, AnswerInput.DISMISSED): _S,
}


class SentEdit(NamedTuple):
    """One answer as a batch carried it. The stamp (``updated``) tells this device's edits
    apart: a version alone may be proposed again once the server kept a lower one."""

    version: int
    value: str
    updated: str

    @classmethod
    def of(cls, entry: OutboxEntry) -> SentEdit:
        return cls(entry.version, entry.value, entry.updated)


def answer_state(
    snap: Snapshot, overridden: Mapping[str, AnswerOverridden], code: str
) -> AnswerState:
    """The state of answer ``code`` (an unanswered question is ``synced``: nothing waits)."""
    if code in snap.outbox:
        return AnswerState.PENDING
    return AnswerState.OVERRIDDEN if code in overridden else AnswerState.SYNCED


def load_overridden(meta: Mapping[str, str]) -> dict[str, AnswerOverridden]:
    """The overridden answers kept in the store's ``meta``."""
    try:
        rows = json.loads(meta.get(OVERRIDDEN_KEY, "{}"))
        return {
            str(code): AnswerOverridden(str(code), str(lost), str(value), int(version), str(upd))
            for code, (lost, value, version, upd) in rows.items()
        }
    except (ValueError, TypeError, AttributeError) as exc:
        raise StorageError(f"stored conflicts are unreadable: {exc}", operation="load") from exc


def _dump_overridden(records: Mapping[str, AnswerOverridden]) -> str:
    rows = {c: [r.lost_value, r.value, r.version, r.updated] for c, r in sorted(records.items())}
    return json.dumps(rows, ensure_ascii=False)


def kept_edit(code: str, sent: SentEdit, result: AnswerResult) -> LocalAnswer:
    """The edit the server keeps after ``result``: the sent one, or (superseded) its own."""
    if result.status is AckStatus.SUPERSEDED:
        value, updated = result.current_value, result.current_updated
        if value is None or updated is None:  # read from the wire, it has both
            raise RemoteProtocolError("superseded without the kept edit", path=f"results.{code}")
        return LocalAnswer(code, value, result.current_version, updated)
    return LocalAnswer(code, sent.value, result.current_version, sent.updated)


def check_ack(identity: tuple[str, str, str], sent: Mapping[str, SentEdit], ack: SaveAck) -> None:
    """Refuse an ack that is not about what the batch ``sent`` (checked before anything is
    applied). ``identity``: (plan, candidate, exam code). Receipts sign the kept edit."""
    plan_id, candidate_id, exam_code = identity
    for code, result in ack.results.items():
        if code not in sent:
            raise RemoteProtocolError("not in the batch", path=f"results.{code}")
        edit = sent[code]
        if result.version != edit.version:
            raise RemoteProtocolError(
                f"acknowledges version {result.version}, sent {edit.version}",
                path=f"results.{code}.version",
            )
        if result.status is AckStatus.ACCEPTED and result.current_version < result.version:
            # Accepted keeps the sent version or one above what the server held.
            raise RemoteProtocolError(
                "accepted below the version sent", path=f"results.{code}.currentVersion"
            )
        kept = kept_edit(code, edit, result)
        receipt = result.receipt
        if receipt is not None and not receipt.payload.is_for(
            plan_id, candidate_id, exam_code, code, kept.version, kept.value
        ):
            raise RemoteProtocolError(
                "receipt does not match the edit kept", path=f"results.{code}.receipt"
            )


class AnswerUpdates:
    """What one operation does to answers, moved through :data:`ANSWER_TRANSITIONS` and
    gathered for one commit (:meth:`changes`). Each question is moved at most once."""

    def __init__(self, snap: Snapshot, overridden: Mapping[str, AnswerOverridden]) -> None:
        self._snap = snap
        self.overridden = dict(overridden)  # the records after this operation
        self._overridden_changed = False
        self.answers: dict[str, LocalAnswer] = {}
        self.outbox_put: dict[str, OutboxEntry] = {}
        self.outbox_delete: set[str] = set()
        self.floors: dict[str, int] = {}
        self.receipts: dict[str, Receipt] = {}
        self.events: list[Event] = []

    def state(self, code: str) -> AnswerState:
        """The state of ``code`` before this operation (each question moves at most once)."""
        return answer_state(self._snap, self.overridden, code)

    # --- the inputs ------------------------------------------------------------------------------

    def queue(self, answer: LocalAnswer, queued_at: float) -> None:
        """An edit (or a resend): ``answer`` goes to the outbox."""
        code = answer.quiz_code
        self._enter(code, AnswerInput.EDITED, answer)
        self.answers[code] = answer
        self.outbox_put[code] = OutboxEntry(
            code, answer.value, answer.version, answer.updated, queued_at
        )
        self.floors[code] = answer.version

    def take(self, trigger: AnswerInput, kept: LocalAnswer) -> None:
        """The server keeps ``kept`` (this device's edit: ACKED; another: TAKEN); the device
        holds it, at the server's version, which is also the floor of the next proposal."""
        code = kept.quiz_code
        self._enter(code, trigger, kept)
        self.answers[code] = kept
        if code in self._snap.outbox:
            self.outbox_delete.add(code)
        self.floors[code] = kept.version

    def dismiss(self, code: str) -> bool:
        """The page showed the conflict; whether there was one."""
        before = self.state(code)
        self._enter(code, AnswerInput.DISMISSED, None)
        return before is AnswerState.OVERRIDDEN

    def ack(self, code: str, sent: SentEdit, result: AnswerResult) -> None:
        """One answer of an ack (checked by :func:`check_ack`), by docs/protocol.md "Save ack"."""
        held = self._snap.receipts.get(code)
        if result.receipt is not None and (
            held is None or held.payload.version <= result.current_version
        ):
            self.receipts[code] = result.receipt  # the server's versions of an answer only rise
        superseded = result.status is AckStatus.SUPERSEDED
        entry = self._snap.outbox.get(code)
        if entry is not None:
            if SentEdit.of(entry) != sent:
                return  # edited again since: the newer edit waits, and is judged when it goes
        else:
            local = self._snap.answers.get(code)
            if local is not None and result.current_version <= local.version:
                return  # the device already holds the server's state from after this ack
        self.take(
            AnswerInput.TAKEN if superseded else AnswerInput.ACKED, kept_edit(code, sent, result)
        )
        if entry is not None and not superseded:
            self.events.append(
                AnswerAcknowledged(code, result.current_version, result.status, result.receipt)
            )

    # --- the result ------------------------------------------------------------------------------

    def changes(self, meta: Mapping[str, str] | None = None) -> Changes:
        all_meta = dict(meta or {})
        if self._overridden_changed:
            all_meta[OVERRIDDEN_KEY] = _dump_overridden(self.overridden)
        return Changes(
            answers=self.answers,
            outbox_put=self.outbox_put,
            outbox_delete=frozenset(self.outbox_delete),
            receipts=self.receipts,
            version_floors=self.floors,
            meta=all_meta,
        )

    def _enter(self, code: str, trigger: AnswerInput, answer: LocalAnswer | None) -> None:
        """Move ``code`` by the table, keeping its record when it is (still) overridden."""
        before = self.state(code)
        after = ANSWER_TRANSITIONS[(before, trigger)]
        if after is AnswerState.OVERRIDDEN:
            assert answer is not None  # only TAKEN leads here, with the server's edit
            previous = self.overridden.get(code)
            lost = previous.lost_value if previous else self._snap.answers[code].value
            record = AnswerOverridden(code, lost, answer.value, answer.version, answer.updated)
            if record != previous:
                self.overridden[code] = record
                self._overridden_changed = True
                self.events.append(record)
        elif code in self.overridden:
            del self.overridden[code]
            self._overridden_changed = True
