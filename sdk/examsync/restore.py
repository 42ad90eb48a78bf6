"""The restore merge: the server's copy of the answers against what this device holds.

A pure function, so the rules can be read (and tested) in one place. The server keeps the
latest edit of each answer (docs/protocol.md, "Several devices"), so a queued local edit is
compared with the server's by when each was made (``updated``, on the server's clock), not by
version. Per question code:

1. the server could not read it back (``missing``): keep the local answer as it is, report it;
2. a queued local edit made later than the server's (or with nothing on the server) stays
   queued: it will win. The restore does not say which device made the server's edit, whose
   id breaks a tie of equal times, so an equal time counts as the server's being later;
3. otherwise the server's edit is taken. A queued local edit it replaces lost: the answer is
   overridden (:class:`~examsync.events.AnswerOverridden`), unless it had the server's value.
   With nothing queued, the server's answer is taken when its version is at least the local
   one (the server's versions of an answer only rise);
4. otherwise the server has less than this device knows it acknowledged (nothing, or a lower
   version): the local answer is queued again, with its own edit time, above every version
   seen, so nothing that was acknowledged is silently lost.

Version floors rise to the server's versions (to the taken one for a taken answer), so the next
local edit proposes a version above them.
"""

from __future__ import annotations

from .answers import AnswerInput, AnswerUpdates, load_overridden
from .events import Event, RestoreReport
from .messages import RestoreResponse
from .protocol import parse_timestamp
from .storage import Changes, LocalAnswer, Snapshot

__all__ = ["merge_restore"]


def merge_restore(
    snap: Snapshot, response: RestoreResponse, now: float
) -> tuple[Changes, RestoreReport, list[Event]]:
    """The storage changes, the report and the events of merging ``response`` into ``snap``."""
    updates = AnswerUpdates(snap, load_overridden(snap.meta))
    restored: list[str] = []
    overridden: list[str] = []
    kept: list[str] = []
    resent: list[str] = []
    unconfirmed: list[str] = []
    missing = [code for code in response.missing if code not in response.answers]
    missing_set = set(missing)

    for code in sorted(set(response.answers) | set(snap.answers) | set(snap.outbox)):
        server = response.answers.get(code)
        local = snap.answers.get(code)
        pending = snap.outbox.get(code)
        server_version = 0 if server is None else server.version
        receipt = snap.receipts.get(code)
        if code in missing_set:
            continue  # rule 1
        if receipt is not None and receipt.payload.version > server_version:
            unconfirmed.append(code)  # the server signed for more than it now returns

        old_floor = snap.version_floors.get(code, 0)
        floor = max(old_floor, server_version)
        if floor != old_floor:
            updates.floors[code] = floor

        if pending is not None and (server is None or _later(pending.updated, server.updated)):
            kept.append(code)  # rule 2
        elif server is not None and (
            pending is not None or local is None or local.version <= server_version
        ):
            # rule 3
            taken = LocalAnswer(code, server.value, server.version, server.updated)
            changed = local is None or (local.value, local.version) != (taken.value, taken.version)
            if pending is not None:
                lost = pending.value != server.value
                updates.take(AnswerInput.TAKEN if lost else AnswerInput.ACKED, taken)
                if lost:
                    overridden.append(code)
            elif changed:
                updates.take(AnswerInput.TAKEN, taken)
            if changed:
                restored.append(code)
        elif local is not None:
            # rule 4: acknowledged here (no outbox entry), but the server has nothing or less
            version = max(floor, local.version) + 1
            updates.queue(LocalAnswer(code, local.value, version, local.updated), queued_at=now)
            resent.append(code)

    report = RestoreReport(
        restored=tuple(restored),
        kept_local=tuple(kept),
        resent=tuple(resent),
        missing=tuple(missing),
        unconfirmed=tuple(unconfirmed),
        overridden=tuple(overridden),
    )
    return updates.changes(), report, updates.events


def _later(local_updated: str, server_updated: str) -> bool:
    """Whether a local edit was made after the server's (to the millisecond, as stamped)."""
    local, server = (round(parse_timestamp(t) * 1000) for t in (local_updated, server_updated))
    return local > server
