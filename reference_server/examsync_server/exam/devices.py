"""Which of a candidate's devices takes the exam: the record a sign-in makes, and its event.

A candidate's sign-in names its device. One that activates (the default) makes that device the
candidate's active one from now on, unless it already is (a page reload is not a takeover).
Under the plan's `device_policy` `single`, the plan queue then refuses the other devices'
saves of edits made from then on (`409 device_replaced`); under `merge` nothing is refused,
but the record is kept all the same and the candidate's other devices and their supervisors
are told (`device_active` on `socket_queue`). See docs/protocol.md, "Several devices".

The record is written as every exam-room change is: SQLite with the event in the outbox (one
transaction), then Redis (`plan_devices`, what the enqueue script reads), then the outbox
relayed. Unlike other changes, a sign-in does not fail when Redis does (a candidate must be
able to sign in and answer on the device during an outage): the stage timer's repair copies
the record and relays the event once Redis is back, and signing in again writes Redis too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

from examsync.frames import device_active_message

from ..base.clock import iso, parse_iso, utc_now
from ..store import keys, outbox
from ..store.candidates import Candidates
from ..store.plans import Row
from .live_state import LiveState
from .transactions import transaction

SINGLE = "single"
MERGE = "merge"


@dataclass(frozen=True, slots=True)
class ActiveDevice:
    device_id: str
    since: str  # ISO 8601 UTC ms, the server's clock at the takeover

    def to_json(self) -> dict[str, str]:
        return {"deviceId": self.device_id, "since": self.since}


@dataclass(frozen=True, slots=True)
class SignedIn:
    """What a candidate's sign-in leaves: the active device, and the one it replaced (only
    under `single`, only when another device was active)."""

    active: ActiveDevice | None
    replaced: str | None


def _held(row: Row) -> ActiveDevice | None:
    device = row["active_device"]
    return ActiveDevice(device, row["active_since"]) if device else None


class Devices:
    def __init__(self, live: LiveState, candidates: Candidates) -> None:
        self.live = live
        self.candidates = candidates

    async def sign_in(
        self, plan: Row, candidate_id: str, group_id: str | None, device_id: str, activate: bool
    ) -> SignedIn:
        """Record `device_id` as the candidate's active device if `activate` and it is not
        already; return the record as it stands after."""
        plan_id = plan["plan_id"]
        # Read as committed first: most sign-ins change nothing and take no write lock.
        held = _held(await self._row(plan_id, candidate_id))
        if not activate:
            return SignedIn(held, None)
        before, changed = held, False
        if held is None or held.device_id != device_id:
            async with transaction(self.live.db) as tx:
                row = await self.candidates.find(plan_id, candidate_id, tx)
                before = held = _held(row) if row is not None else None
                if held is None or held.device_id != device_id:
                    held, changed = ActiveDevice(device_id, _next_since(held)), True
                    await self.candidates.set_active_device(
                        tx, plan_id, candidate_id, device_id, held.since
                    )
                    event = _event(plan, candidate_id, group_id, held)
                    await outbox.add(tx, keys.SOCKET_STREAM, event, held.since)
        assert held is not None
        # Written on every activating sign-in, changed or not: signing in again repairs a
        # Redis write that failed after the commit.
        await self.live.active_device(plan_id, candidate_id, held.device_id, held.since)
        if changed:
            await self.live.relay()  # keeps in the outbox what Redis does not take now
        took_over = changed and before is not None and plan["device_policy"] == SINGLE
        return SignedIn(held, before.device_id if took_over and before is not None else None)

    async def _row(self, plan_id: str, candidate_id: str) -> Row:
        row = await self.candidates.find(plan_id, candidate_id)
        assert row is not None, "a signed-in candidate has a row"
        return row


def _next_since(held: ActiveDevice | None) -> str:
    """Now, but strictly after the last takeover: devices order the records they hear of by
    `since`, so two takeovers in one millisecond (or across a clock step back) must differ."""
    now = utc_now()
    now -= timedelta(microseconds=now.microsecond % 1000)  # as `iso` writes it
    if held is not None:
        last = parse_iso(held.since)
        if now <= last:
            now = last + timedelta(milliseconds=1)
    return iso(now)


def _event(
    plan: Row, candidate_id: str, group_id: str | None, active: ActiveDevice
) -> dict[str, str]:
    """The `socket_queue` entry: routed like a candidate's stage change (the candidate's
    sockets and their group's supervisors)."""
    message = device_active_message(
        plan["plan_id"],
        candidate_id,
        group_id,
        active.device_id,
        active.since,
        plan["device_policy"],
    )
    return {
        "type": "device_active",
        "planId": plan["plan_id"],
        "candidateId": candidate_id,
        "groupId": group_id or "",
        "data": json.dumps(message, ensure_ascii=False),
    }
