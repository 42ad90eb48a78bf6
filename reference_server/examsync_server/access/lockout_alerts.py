"""The channels a lockout is announced on today: the candidate's group's supervisors (an
`alert` on `socket_queue`, as a dead letter's) and the admins' `queue:alerts` stream, beside
the WARNING log line the throttle writes. A later channel (a webhook) implements
`throttle.LockoutAlerts` and is appended to `LoginThrottle.alerts`."""

from __future__ import annotations

import json

from redis.asyncio import Redis

from examsync.frames import lockout_alert_message

from ..base.clock import iso, utc_now
from ..store import keys
from ..store.dead_letters import ALERT_STREAM
from .throttle import Lockout


class PublishedAlerts:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def locked(self, lockout: Lockout) -> None:
        await self._publish("locked_out", lockout, "")

    async def lifted(self, lockout: Lockout, by: str) -> None:
        await self._publish("lockout_lifted", lockout, by)

    async def _publish(self, kind: str, lockout: Lockout, by: str) -> None:
        now = iso(utc_now())
        account = lockout.account
        admin = {**lockout.to_json(), "type": kind, "by": by, "timestamp": now}
        await self.redis.xadd(
            ALERT_STREAM,
            {k: v or "" for k, v in admin.items()},
            maxlen=10_000,
            approximate=True,
        )
        if account.kind != "candidate" or not lockout.known:
            # A supervisor's lockout, or one of an id nobody has (made up by whoever guessed),
            # names no examinee: the admin's only.
            return
        message = lockout_alert_message(
            kind, account.plan_id, account.subject, lockout.group_id, lockout.locked_until, now
        )
        await self.redis.xadd(
            keys.SOCKET_STREAM,
            {
                "type": "alert",
                "planId": account.plan_id,
                "candidateId": account.subject,
                "groupId": lockout.group_id or "",
                "audience": "supervisors",
                "data": json.dumps(message, ensure_ascii=False),
            },
            maxlen=keys.STREAM_MAXLEN,
            approximate=True,
        )
