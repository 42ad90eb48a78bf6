"""Queueing an entry on a plan's stream and waiting for its commit (seed 002 §3.1 steps 1-2, 5).

What saves, captures and log batches share once validated: one Lua call checks that the plan
is in progress and appends to the plan's stream (answers, media or logs); the request then
waits for the persister's ack, which only comes after the SQLite commit. After `end`, an entry
whose content was made before the end is still taken within the grace window, flagged late.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from redis.asyncio import Redis

from ..access.tokens import Principal
from ..base.clock import iso, parse_iso, utc_now
from ..errors import ApiError
from ..exam.plan_status import Action, PlanStatus, refusal, statuses_allowing
from ..store import keys
from ..store.script_batch import ScriptBatch
from .acks import AckHub

# KEYS: plan hash, plan stream. ARGV, per entry (ScriptBatch groups them): its count n, then
# n arguments: 'late' or '', and the entry's field/value pairs. Appends each entry only while
# the plan's status takes saves (or when the caller vouches for a late entry); one reply per
# entry. The statuses that take saves come from plan_status.py's table, as a Lua set.
_TAKING = ", ".join(f"['{status}'] = true" for status in statuses_allowing(Action.SAVE))
_ENQUEUE = """
local status = redis.call('HGET', KEYS[1], 'status')
local taking = {TAKING}
local replies, at = {}, 1
while at <= #ARGV do
  local n = tonumber(ARGV[at])
  if taking[status] or ARGV[at + 1] == 'late' then
    local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, at + 2, at + n))
    replies[#replies + 1] = {'queued', id}
  else
    replies[#replies + 1] = {status or '', redis.call('HGET', KEYS[1], 'end_datetime') or ''}
  end
  at = at + n + 1
end
return replies
""".replace("{TAKING}", "{" + _TAKING + "}")

_PLAN_STATUSES = frozenset(PlanStatus)

# Given the plan's end, whether everything in the entry was made before it.
MadeBefore = Callable[[datetime], bool]


def all_before(timestamps: Iterable[str]) -> MadeBefore:
    """For entries carrying wire timestamps: each must be at or before the end."""
    moments = [parse_iso(t) for t in timestamps]
    return lambda end: all(moment <= end for moment in moments)


class PlanQueue:
    def __init__(self, redis: Redis, hub: AckHub, late_grace_seconds: int) -> None:
        self.hub = hub  # its timeout is how long a request waits for the commit
        self.late_grace_seconds = late_grace_seconds
        self._enqueue = ScriptBatch(redis, _ENQUEUE)
        # Request ids (hex): unique to this process's life by the counter, and across
        # processes and restarts by the random prefix; cheaper per save than random bytes.
        self._rid_prefix = secrets.token_hex(4)
        self._rids = itertools.count()

    async def submit(
        self, who: Principal, kind: str, fields: dict[str, str], made_before: MadeBefore
    ) -> bytes:
        """Queue the entry on the plan's `kind` stream; return its ack (JSON) once committed."""
        rid = f"{self._rid_prefix}{next(self._rids):x}"
        # Before queueing: the ack may beat us back. The timeout counts from here.
        waiting = self.hub.expect(rid)
        try:
            await self._queue(who, kind, rid, fields, made_before)
            return await waiting
        except TimeoutError:
            raise ApiError(
                503,
                "ack_timeout",
                "queued but not yet committed; send it again (a repeat is recognised)",
            ) from None
        finally:
            self.hub.forget(rid)

    async def _queue(
        self, who: Principal, kind: str, rid: str, fields: dict[str, str], made_before: MadeBefore
    ) -> None:
        entry = {
            "rid": rid,
            "node": self.hub.node_id,
            "plan": who.plan_id,
            "cand": who.subject_id,
            "at": iso(utc_now()),
            **fields,
        }
        pairs = [part for item in entry.items() for part in item]
        stream_keys = [keys.plan(who.plan_id), keys.plan_stream(who.plan_id, kind)]
        # An entry is on time unless it says `late 1` (the sinks read a missing flag as 0).
        status, detail = await self._enqueue(stream_keys, ["", *pairs])
        if status == "queued":
            return
        if status not in _PLAN_STATUSES:  # no plan hash: Redis lost it, the repair brings it back
            raise ApiError(503, "redis_unavailable", "the plan's live state is missing; retry")
        if status != PlanStatus.COMPLETED:
            raise refusal(Action.SAVE, who.plan_id, status)
        if self._late_allowed(made_before, detail):
            await self._enqueue(stream_keys, ["late", "late", "1", *pairs])
            return
        raise refusal(Action.SAVE, who.plan_id, status, endedAt=detail)

    def _late_allowed(self, made_before: MadeBefore, ended: str) -> bool:
        """Late entries count if made before the end and arriving within the grace window
        (a candidate whose network came back late)."""
        try:
            end = parse_iso(ended)
        except ValueError:
            return False
        if utc_now() - end > timedelta(seconds=self.late_grace_seconds):
            return False
        return made_before(end)
