"""Queueing an entry on a plan's stream and waiting for its commit (seed 002 §3.1 steps 1-2, 5).

What saves, captures and log batches share once validated: one Lua call checks that the plan
is in progress and appends to the plan's stream (answers, media or logs); the request then
waits for the persister's ack, which only comes after the SQLite commit. After `end`, an entry
whose content was made before the end is still taken within the grace window, flagged late.
Under the plan's `single` device policy, the same call refuses a save from a device another
one took over from, if it carries an edit made since (`409 device_replaced`; exam/devices.py).
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from redis.asyncio import Redis

from examsync.protocol import format_timestamp

from ..access.tokens import Principal
from ..base.clock import iso, parse_iso, utc_now
from ..errors import ApiError
from ..exam.plan_status import Action, PlanStatus, refusal, statuses_allowing
from ..store import keys
from ..store.script_batch import ScriptBatch
from .acks import AckHub

# KEYS: plan hash, plan stream, plan_devices. ARGV, per entry (ScriptBatch groups them): its
# count n, then n arguments: 'late' or '', the candidate, the sender's device ('' for no device
# check), the entry's latest edit time (epoch ms), and the entry's field/value pairs. Appends
# each entry only while the plan's status takes saves (or when the caller vouches for a late
# entry), and, under the `single` device policy, unless another device of the candidate is the
# active one and this device lost the exam (store/state.py) at or before the entry's latest
# edit; one reply per entry. The statuses that take saves come from plan_status.py's table, as
# a Lua set.
_TAKING = ", ".join(f"['{status}'] = true" for status in statuses_allowing(Action.SAVE))
_ENQUEUE = """
local status = redis.call('HGET', KEYS[1], 'status')
local taking = {TAKING}
local single
local replies, at = {}, 1
while at <= #ARGV do
  local n, device = tonumber(ARGV[at]), ARGV[at + 3]
  local active = false
  if device ~= '' then
    if single == nil then single = redis.call('HGET', KEYS[1], 'device_policy') ~= 'merge' end
    if single then active = redis.call('HGET', KEYS[3], ARGV[at + 2]) end
  end
  local holder, since, lost
  if active then holder, since = string.match(active, '^(%S+) (%d+)$') end
  if holder and holder ~= device then
    lost = redis.call('HGET', KEYS[3], ARGV[at + 2] .. ' ' .. device) or since
  end
  if not (taking[status] or ARGV[at + 1] == 'late') then
    replies[#replies + 1] = {status or '', redis.call('HGET', KEYS[1], 'end_datetime') or ''}
  elseif lost and tonumber(ARGV[at + 4]) >= tonumber(lost) then
    replies[#replies + 1] = {'device_replaced', active .. ' ' .. lost}
  else
    local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, at + 5, at + n))
    replies[#replies + 1] = {'queued', id}
  end
  at = at + n + 1
end
return replies
""".replace("{TAKING}", "{" + _TAKING + "}")

_PLAN_STATUSES = frozenset(PlanStatus)

# Given the plan's end, whether everything in the entry was made before it.
MadeBefore = Callable[[datetime], bool]


def made_by(latest: datetime | None) -> MadeBefore:
    """For an entry whose content was last made at `latest` (None: carries no time)."""
    return lambda end: latest is None or latest <= end


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
        self,
        who: Principal,
        kind: str,
        fields: dict[str, str],
        made_before: MadeBefore,
        edited_ms: int | None = None,
    ) -> bytes:
        """Queue the entry on the plan's `kind` stream; return its ack (JSON) once committed.

        `edited_ms`: the latest edit the entry carries (epoch ms), for the check that the
        sender's device was not replaced before it; None: no such check (media, logs)."""
        rid = f"{self._rid_prefix}{next(self._rids):x}"
        # Before queueing: the ack may beat us back. The timeout counts from here.
        waiting = self.hub.expect(rid)
        try:
            device = (who.device_id, str(edited_ms)) if edited_ms is not None else ("", "0")
            await self._queue(who, kind, rid, fields, made_before, device)
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
        self,
        who: Principal,
        kind: str,
        rid: str,
        fields: dict[str, str],
        made_before: MadeBefore,
        device: tuple[str, str],
    ) -> None:
        entry = {
            "rid": rid,
            "node": self.hub.node_id,
            "plan": who.plan_id,
            "cand": who.subject_id,
            "at": iso(utc_now()),
            **fields,
        }
        head = [who.subject_id, *device]  # who sends it, for the device check
        pairs = [part for item in entry.items() for part in item]
        stream_keys = [
            keys.plan(who.plan_id),
            keys.plan_stream(who.plan_id, kind),
            keys.plan_devices(who.plan_id),
        ]
        # An entry is on time unless it says `late 1` (the sinks read a missing flag as 0).
        status, detail = await self._enqueue(stream_keys, ["", *head, *pairs])
        if status == "queued":
            return
        if status == "device_replaced":
            raise _replaced(detail)
        if status not in _PLAN_STATUSES:  # no plan hash: Redis lost it, the repair brings it back
            raise ApiError(503, "redis_unavailable", "the plan's live state is missing; retry")
        if status != PlanStatus.COMPLETED:
            raise refusal(Action.SAVE, who.plan_id, status)
        if self._late_allowed(made_before, detail):
            status, detail = await self._enqueue(stream_keys, ["late", *head, "late", "1", *pairs])
            if status == "device_replaced":
                raise _replaced(detail)
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


def _replaced(detail: str) -> ApiError:
    """`409 device_replaced`: the active device and since when (its `plan_devices` value), and
    since when the sender has been replaced (the first takeover after it last had the exam)."""
    device, since_ms, lost_ms = detail.split(" ")
    return ApiError(
        409,
        "device_replaced",
        "another device of this candidate took over the exam; this save holds edits made since",
        {
            "activeDevice": device,
            "since": format_timestamp(int(since_ms) / 1000),
            "replacedSince": format_timestamp(int(lost_ms) / 1000),
        },
    )
