"""One consumer of a Redis Streams consumer group: the steps every queue worker shares.

Read new entries (`>`) or our own pending ones (`0`, to retry what failed), take over what a
dead consumer left pending for `claim_idle_ms` (XAUTOCLAIM), acknowledge and delete what is
handled, and count failed attempts so that a worker can dead-letter an entry that keeps
failing. The answer persister and the connection-state manager are built on it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

Entry = tuple[str, str, dict[str, str]]  # stream, message id, fields


class MissingGroup(Exception):
    """A stream or its group vanished (Redis restarted without its data, or a FLUSHALL)."""


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create the stream and its consumer group from the beginning; idempotent."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


@dataclass
class GroupConsumer:
    redis: Redis
    group: str
    name: str
    claim_idle_ms: int = 30_000
    _attempts: dict[str, int] = field(default_factory=dict)

    @property
    def claim_every(self) -> float:
        """Seconds between looks for a dead consumer's entries."""
        return min(5.0, max(0.1, self.claim_idle_ms / 2000))

    async def read(
        self, streams: Iterable[str], start: str, block_ms: int | None, count: int
    ) -> list[Entry]:
        """Entries after `start` (`>`: never delivered; `0`: ours, still pending)."""
        try:
            batches: Any = await self.redis.xreadgroup(
                self.group, self.name, {s: start for s in streams}, count=count, block=block_ms
            )
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                raise MissingGroup(str(exc)) from None
            raise
        # An entry deleted while pending comes back with no fields: nothing left to handle.
        return [
            (stream, mid, fields)
            for stream, entries in batches or []
            for mid, fields in entries
            if fields
        ]

    async def claim_stale(self, stream: str, count: int) -> list[Entry]:
        """Take over what another consumer has held for `claim_idle_ms` (its process died)."""
        try:
            reply: Any = await self.redis.xautoclaim(
                stream, self.group, self.name, self.claim_idle_ms, "0-0", count=count
            )
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                raise MissingGroup(str(exc)) from None
            raise
        return [(stream, mid, fields) for mid, fields in reply[1] if fields]

    async def done(self, ids: Iterable[tuple[str, str]]) -> None:
        """Acknowledge and delete handled entries (stream, message id)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            if self.queue_done(pipe, ids):
                await pipe.execute()

    def queue_done(self, pipe: Pipeline, ids: Iterable[tuple[str, str]]) -> bool:
        """Add the XACK and XDEL of handled entries to `pipe`, for a caller that sends more
        in the same round trip; False when there is nothing to add."""
        by_stream: dict[str, list[str]] = defaultdict(list)
        for stream, mid in ids:
            by_stream[stream].append(mid)
            self._attempts.pop(mid, None)
        for stream, mids in by_stream.items():
            pipe.xack(stream, self.group, *mids)
            pipe.xdel(stream, *mids)
        return bool(by_stream)

    def failed(self, message_id: str) -> int:
        """Count a failed attempt at an entry; returns how many it has had."""
        attempts = self._attempts.get(message_id, 0) + 1
        self._attempts[message_id] = attempts
        return attempts

    def forget(self, message_id: str) -> None:
        """The entry was handled after all: its failed attempts no longer count."""
        self._attempts.pop(message_id, None)

    def retry_delay(self) -> float:
        """A pause before retrying, longer the more the worst entry has failed (capped)."""
        return min(2.0, 0.1 * max(self._attempts.values(), default=1))
