"""The restore merge: the server's copy of the answers against what this device holds.

A pure function, so the rules can be read (and tested) in one place. Per question code:

1. the server could not read it back (``missing``): keep the local answer as it is, report it;
2. an unacknowledged local edit with a version above the server's wins: it stays queued;
3. otherwise, if the server has the answer at a version at least the local one, the server's
   answer is taken and any (older or equal) queued local edit is dropped;
4. otherwise the server has less than this device knows it acknowledged (nothing, or a lower
   version): the local answer is queued again, above every version seen, so nothing that was
   acknowledged is silently lost.

Version floors rise to the server's versions, so the next local edit goes above them.
"""

from __future__ import annotations

from .events import RestoreReport
from .messages import RestoreResponse
from .protocol import format_timestamp
from .storage import Changes, LocalAnswer, OutboxEntry, Snapshot

__all__ = ["merge_restore"]


def merge_restore(
    snap: Snapshot, response: RestoreResponse, now: float
) -> tuple[Changes, RestoreReport]:
    """The storage changes and the report of merging ``response`` into ``snap`` at ``now``."""
    answers: dict[str, LocalAnswer] = {}
    outbox_put: dict[str, OutboxEntry] = {}
    outbox_delete: set[str] = set()
    floors: dict[str, int] = {}
    restored: list[str] = []
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
            floors[code] = floor

        if pending is not None and pending.version > server_version:
            kept.append(code)  # rule 2
        elif server is not None and (
            pending is not None or local is None or local.version <= server_version
        ):
            # rule 3
            if local is None or (local.value, local.version) != (server.value, server.version):
                answers[code] = LocalAnswer(code, server.value, server.version, server.updated)
                restored.append(code)
            if pending is not None:
                outbox_delete.add(code)
        elif local is not None:
            # rule 4: acknowledged here (no outbox entry), but the server has nothing or less
            version = floor + 1
            updated = format_timestamp(now)
            answers[code] = LocalAnswer(code, local.value, version, updated)
            outbox_put[code] = OutboxEntry(code, local.value, version, updated, queued_at=now)
            floors[code] = version
            resent.append(code)

    changes = Changes(
        answers=answers,
        outbox_put=outbox_put,
        outbox_delete=frozenset(outbox_delete),
        version_floors=floors,
    )
    report = RestoreReport(
        restored=tuple(restored),
        kept_local=tuple(kept),
        resent=tuple(resent),
        missing=tuple(missing),
        unconfirmed=tuple(unconfirmed),
    )
    return changes, report
