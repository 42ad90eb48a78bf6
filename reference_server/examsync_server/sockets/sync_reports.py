"""What candidates' SDKs report about their unacknowledged answers: `sync_state` frames.

`{"type": "sync_state", "pending": <answers not yet acknowledged>, "oldestPendingAge": <seconds
the oldest has waited, or null>}`. The supervisors' snapshot shows it (presence/snapshot.py): an
examinee whose answers pile up on the device is visible before anything is lost.

A frame is not a Redis write: the latest report per examinee waits here, and one task writes
all of them every `flush_every` seconds in one pipeline (a report superseded meanwhile is never
written). While Redis is away, the latest reports stay and go out when it is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..access.tokens import Principal
from ..base.clock import iso, utc_now
from ..base.tasks import cancel_requested
from ..errors import ApiError
from ..store import keys

log = logging.getLogger(__name__)

FEATURE = "sync_state"  # in the welcome's `features`
KEEP_SECONDS = 24 * 3600  # a report outlives its socket, but not the exam day
MAX_AGE_SECONDS = 366 * 24 * 3600  # beyond this a number is nonsense, not an age


def parse(message: Mapping[str, Any]) -> tuple[int, float | None]:
    """(pending, oldestPendingAge) of a `sync_state` frame; ApiError when it is malformed."""
    pending = message.get("pending")
    age = message.get("oldestPendingAge")
    if not isinstance(pending, int) or isinstance(pending, bool) or pending < 0:
        raise ApiError(400, "invalid_message", "sync_state.pending must be an integer >= 0")
    if age is not None and (
        not isinstance(age, int | float) or isinstance(age, bool) or not 0 <= age <= MAX_AGE_SECONDS
    ):
        raise ApiError(
            400, "invalid_message", "sync_state.oldestPendingAge must be seconds >= 0, or null"
        )
    return pending, None if age is None else float(age)


class SyncReports:
    def __init__(self, redis: Redis, flush_every: float = 1.0) -> None:
        self.redis = redis
        self.flush_every = flush_every
        self._latest: dict[tuple[str, str], dict[str, str]] = {}

    def note(self, who: Principal, pending: int, oldest_age: float | None) -> None:
        self._latest[(who.plan_id, who.subject_id)] = {
            "pending": str(pending),
            "oldestPendingAge": "" if oldest_age is None else f"{oldest_age:.3f}",
            "reportedAt": iso(utc_now()),
        }

    async def run(self) -> None:
        while not cancel_requested():
            await asyncio.sleep(self.flush_every)
            await self.flush()

    async def flush(self) -> None:
        if not self._latest:
            return
        batch, self._latest = self._latest, {}
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for (plan_id, examinee_id), fields in batch.items():
                    key = keys.examinee_sync(plan_id, examinee_id)
                    pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
                    pipe.expire(key, KEEP_SECONDS)
                await pipe.execute()
        except RedisError as exc:
            log.warning("sync reports not written (%s); kept for the next flush", exc)
            # Newer reports that came meanwhile win over the ones put back.
            self._latest = {**batch, **self._latest}
