"""The supervisor's snapshot: their group's examinees now, and where the event stream stands.

`GET /api/v1/supervisor/snapshot` answers, for each examinee of the supervisor's group (every
examinee of the plan for a supervisor with no group): the seed 004 connection state, the
candidate's status and current stage, how many answers the server holds and when the last save
was committed, the device the candidate last signed in from to take the exam (`activeDevice`,
`activeSince`: exam/devices.py), whether failed sign-ins locked the candidate out and until
when (`lockedUntil`: access/throttle.py; `alert` events of kind `locked_out` and
`lockout_lifted` follow it live), and what the examinee's SDK last reported about answers still
on the device (`pending`, `oldestPendingAge`: sockets/sync_reports.py). With it comes
`position`, the `socket_queue` position at snapshot time: the dashboard opens its socket with
`lastPosition=<position>` and gets every event after the snapshot, with no gap.

Why no gap: the position and the connection keys are read in one MULTI, and the state manager
writes those keys and queues their event in one Lua call, so the snapshot holds exactly the
connection events up to `position`. Everything else is read from SQLite after that, and what it
announces (stage changes, device takeovers) is committed before its event is queued (the
outbox), so SQLite holds at least what the events up to `position` said. An event after
`position` may already show in the snapshot; every event states a new value rather than a
change, so applying it again is harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from ..access.throttle import LoginThrottle, read_lockouts
from ..access.tokens import Principal
from ..base.clock import iso, parse_iso, utc_now
from ..errors import ApiError
from ..store import keys
from ..store.candidates import Candidates


class SnapshotService:
    def __init__(self, candidates: Candidates, redis: Redis, throttle: LoginThrottle) -> None:
        self.candidates = candidates
        self.redis = redis
        self.throttle = throttle

    async def take(self, who: Principal) -> dict[str, Any]:
        if who.role != "supervisor":
            raise ApiError(403, "supervisors_only", "only supervisors see the group's snapshot")
        ids = await self.candidates.ids(who.plan_id, who.group_id)
        position, connections, reports, locked = await self._live(who.plan_id, ids)
        rows = await self.candidates.examinees(who.plan_id, who.group_id)
        now = utc_now()
        examinees = []
        for row in rows:
            cid = row.candidate_id
            conn = connections.get(cid, {})
            report = reports.get(cid, {})
            examinees.append(
                {
                    "examineeId": cid,
                    "name": row.name,
                    "groupId": row.group_id,
                    "status": row.status,
                    "currentStage": row.current_stage,
                    "connStatusCode": conn.get("connStatusCode"),
                    "lastActiveTime": conn.get("lastActiveTime"),
                    "answered": row.answered,
                    "lastSaveTime": row.last_save,
                    "activeDevice": row.active_device,
                    "activeSince": row.active_since,
                    "lockedUntil": locked.get(cid),
                    **_sync(report, now),
                }
            )
        return {
            "planId": who.plan_id,
            "groupId": who.group_id,
            "position": position,
            "serverTime": iso(now),
            "examinees": examinees,
        }

    async def _live(
        self, plan_id: str, ids: Sequence[str]
    ) -> tuple[str, dict[str, dict[str, str]], dict[str, dict[str, str]], dict[str, str]]:
        """The stream position with the connection keys and the sign-in lockouts as of that
        position (one MULTI), and the SDKs' sync reports."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xrevrange(keys.SOCKET_STREAM, count=1)
            pipe.zrange(
                keys.login_lockouts(plan_id),
                f"({self.throttle.now_ms()}",
                "+inf",
                byscore=True,
                withscores=True,
            )
            for cid in ids:
                pipe.hgetall(keys.examinee_progress(plan_id, cid))
            for cid in ids:
                pipe.hgetall(keys.examinee_sync(plan_id, cid))
            replies: list[Any] = await pipe.execute()
        last, lockouts = replies[0], replies[1]
        progress, sync = replies[2 : len(ids) + 2], replies[len(ids) + 2 :]
        position = last[0][0] if last else "0-0"
        locked = {
            lockout["id"]: lockout["lockedUntil"]
            for lockout in read_lockouts(lockouts)
            if lockout["kind"] == "candidate"
        }
        return (
            position,
            dict(zip(ids, progress, strict=True)),
            dict(zip(ids, sync, strict=True)),
            locked,
        )


def _sync(report: dict[str, str], now: datetime) -> dict[str, Any]:
    """The SDK's last report, its oldest pending answer aged to now (the SDK reports on change
    and every few seconds; the answer keeps waiting in between)."""
    if not report:
        return {"pending": None, "oldestPendingAge": None, "syncReportedAt": None}
    reported_at = report.get("reportedAt", "")
    age: float | None = None
    if report.get("oldestPendingAge"):
        age = float(report["oldestPendingAge"])
        try:
            age += max(timedelta(0), now - parse_iso(reported_at)).total_seconds()
        except ValueError:
            pass
        age = round(age, 3)
    return {
        "pending": int(report.get("pending") or 0),
        "oldestPendingAge": age,
        "syncReportedAt": reported_at or None,
    }
