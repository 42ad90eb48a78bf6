"""Live state in Redis under the seeds' key formats; the only module that writes those keys.

Values are Redis hashes of strings: numbers in decimal, booleans "true"/"false", and a null
(seed 000: `"current_stage": null`) as the empty string. Redis is a cache of SQLite here: every
writer below runs after the SQLite commit it mirrors, and `sync_plan` rebuilds a plan's keys
from SQLite when Redis is behind (a restart without AOF, a FLUSHALL).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from redis.asyncio import Redis

from examsync.protocol import parse_timestamp

from . import keys
from .plans import PlanSnapshot
from .streams import ensure_group

_CHUNK = 1000

# KEYS 1 plan_devices. ARGV: candidate, "<device> <since ms>", … Each candidate's active device
# is set unless Redis holds a later one: two sign-ins commit in order but may reach Redis in
# the other, and a repair's copy from SQLite may be older than a sign-in made meanwhile.
# ARGV: pairs of candidate, `plan_devices` value. A record only gives way to a later one. Beside
# each candidate's record ("<device> <since ms>", field: the candidate), a device that lost the
# exam keeps when it did (field "<candidate> <device>"), until it takes the exam back: a later
# takeover by a third device must not let through what it edited meanwhile.
_SET_DEVICES = """
for i = 1, #ARGV, 2 do
  local candidate = ARGV[i]
  local held = redis.call('HGET', KEYS[1], candidate)
  local device, since = string.match(ARGV[i + 1], '^(%S+) (%d+)$')
  local held_device, held_since
  if held then held_device, held_since = string.match(held, '^(%S+) (%d+)$') end
  if not held or tonumber(held_since or '0') <= tonumber(since) then
    redis.call('HSET', KEYS[1], candidate, ARGV[i + 1])
    if held_device and held_device ~= device then
      redis.call('HSETNX', KEYS[1], candidate .. ' ' .. held_device, since)
    end
    redis.call('HDEL', KEYS[1], candidate .. ' ' .. device)
  end
end
return 0
"""


def device_record(device_id: str, since: str) -> str:
    """A `plan_devices` value: the device and since when (ISO 8601 → epoch ms)."""
    return f"{device_id} {round(parse_timestamp(since) * 1000)}"


def as_hash(values: Mapping[str, Any]) -> dict[Any, str]:
    def text(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return {name: text(value) for name, value in values.items()}


class RedisState:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._set_devices = redis.register_script(_SET_DEVICES)

    async def sync_plan(self, snap: PlanSnapshot) -> None:
        """Write every key of one plan from its SQLite snapshot (seed 000 steps 2 and 3).

        The plan hash, holding the status, goes last: whoever sees the status sees the rest.
        """
        plan = snap.plan
        plan_id = plan["plan_id"]
        writes: list[tuple[str, dict[Any, str]]] = []
        for stage in snap.stages:
            writes.append(
                (
                    keys.stage(plan_id, stage["stage_id"]),
                    as_hash(
                        {
                            "stage_name": stage["stage_name"],
                            "stage_order": stage["stage_order"],
                            "time_limit_seconds": stage["time_limit_seconds"],
                            "auto_move_enabled": bool(stage["auto_move_enabled"]),
                            "exam_code": stage["exam_code"],
                            "allocated_exam_time": stage["allocated_exam_time"],
                        }
                    ),
                )
            )
        for group in snap.groups:
            writes.append(
                (
                    keys.group_info(group["group_id"]),
                    as_hash(
                        {
                            "group_name": group["group_name"],
                            "group_description": group["group_description"],
                            "start_datetime": group["start_datetime"],
                            "end_datetime": group["end_datetime"],
                            "plan_id": plan_id,
                        }
                    ),
                )
            )
        for sup in snap.supervisors:
            writes.append(
                (
                    keys.supervisor_info(sup["supervisor_id"]),
                    as_hash(
                        {
                            "name": sup["supervisor_name"],
                            "group_id": sup["group_id"],
                            "plan_id": plan_id,
                        }
                    ),
                )
            )
        for cand in snap.candidates:
            status = {"status": cand["status"], "current_stage": cand["current_stage_id"]}
            if cand["last_active_time"]:
                status["last_active_time"] = cand["last_active_time"]
            writes.append((keys.candidate_status(cand["candidate_id"]), as_hash(status)))
        writes.append((keys.plan_queue(plan_id), {"queue_status": "initialized"}))
        for start in range(0, len(writes), _CHUNK):
            async with self.redis.pipeline(transaction=True) as pipe:
                for key, mapping in writes[start : start + _CHUNK]:
                    pipe.delete(key)
                    pipe.hset(key, mapping=mapping)
                await pipe.execute()
        await self.create_plan_streams(plan_id)
        await self.set_active_devices(
            plan_id,
            {
                c["candidate_id"]: (c["active_device"], c["active_since"])
                for c in snap.candidates
                if c["active_device"]
            },
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.plan(plan_id))
            pipe.hset(keys.plan(plan_id), mapping=plan_hash(plan))
            await pipe.execute()

    async def create_plan_streams(self, plan_id: str) -> None:
        """The plan's queues (Redis Streams) with the persisters' consumer group; idempotent."""
        for kind in keys.PLAN_STREAM_KINDS:
            await ensure_group(self.redis, keys.plan_stream(plan_id, kind), keys.PERSISTER_GROUP)

    async def forget_plan(
        self,
        plan_id: str,
        stage_ids: Iterable[str],
        candidate_ids: Iterable[str],
        supervisor_ids: Iterable[str],
        group_ids: Iterable[str],
    ) -> None:
        """Remove the live keys of a plan's previous version (on replace)."""
        doomed = [keys.plan(plan_id), keys.plan_queue(plan_id), keys.plan_devices(plan_id)]
        doomed += [keys.stage(plan_id, s) for s in stage_ids]
        doomed += [keys.candidate_status(c) for c in candidate_ids]
        doomed += [keys.supervisor_info(s) for s in supervisor_ids]
        doomed += [keys.group_info(g) for g in group_ids]
        for start in range(0, len(doomed), _CHUNK):
            await self.redis.delete(*doomed[start : start + _CHUNK])

    async def set_plan_fields(self, plan_id: str, fields: Mapping[str, Any]) -> None:
        await self.redis.hset(keys.plan(plan_id), mapping=as_hash(fields))

    async def set_candidates(self, candidate_ids: Iterable[str], fields: Mapping[str, Any]) -> None:
        mapping = as_hash(fields)
        ids = list(candidate_ids)
        for start in range(0, len(ids), _CHUNK):
            async with self.redis.pipeline(transaction=False) as pipe:
                for candidate_id in ids[start : start + _CHUNK]:
                    pipe.hset(keys.candidate_status(candidate_id), mapping=mapping)
                await pipe.execute()

    async def set_active_devices(
        self, plan_id: str, devices: Mapping[str, tuple[str, str]]
    ) -> None:
        """Candidate → (device, since ISO): the devices whose saves the plan queue checks."""
        args = [
            part for cid, (d, since) in devices.items() for part in (cid, device_record(d, since))
        ]
        for start in range(0, len(args), 2 * _CHUNK):
            await self._set_devices([keys.plan_devices(plan_id)], args[start : start + 2 * _CHUNK])

    async def plan_status(self, plan_id: str) -> str | None:
        value = await self.redis.hget(keys.plan(plan_id), "status")
        return value.decode() if isinstance(value, bytes) else value


def plan_hash(plan: Mapping[str, Any]) -> dict[Any, str]:
    """The `exam_plan:{plan_id}` hash (seed 000 §3.1.1, seed 001 §3.1, seed 003 §7)."""
    ended = plan["ended_at"]
    return as_hash(
        {
            "exam_name": plan["exam_name"],
            "start_datetime": plan["start_datetime"],
            # Seed 001: once completed, end_datetime is when the exam actually ended.
            "end_datetime": ended or plan["end_datetime"],
            "status": plan["status"],
            "login_method": plan["login_method"],
            "conduct_type": plan["conduct_type"],
            "device_policy": plan["device_policy"],
            "current_stage": plan["current_stage_id"],
            "started_at": plan["started_at"],
        }
    )
