"""Waiting for the commit: the request that queued a save waits here for its acknowledgement.

The persister that commits a save may run in another process. It answers the receiving
process on its channel `acks:{node_id}` (Redis pub/sub), or, when the save was received by its
own process, resolves the waiting request directly. An acknowledgement that never comes (a
process died mid-way) ends in a timeout: the client retries, and the edit rule makes the
retry a harmless `duplicate`.

Pub/sub keeps nothing: an ack published while the listener is not subscribed (a Redis restart,
a dropped connection) is lost, and its request would wait the whole timeout for a save that
committed. PUBLISH says how many heard it, so a message nobody heard is then appended to the
receiving process's ack record (a stream trimmed to the last `timeout` seconds): one more round
trip only then, none while listeners listen. The listener reads the record each time it has
subscribed, and every second while requests wait: the Redis client may reconnect and
resubscribe on its own, unseen, and a message published to nobody just before a subscribe is
recorded just after it. It answers who still waits. A round trip whose replies were lost (Redis
stopping after running it) says nothing of who heard: its acks are all recorded, once Redis
is back (persister.py). The record is in Redis: if Redis lost it too, the wait ends in the
timeout as before.

An acknowledgement travels as the JSON bytes the client receives, encoded once by the
persister: the receiving process sends them on as they are (the HTTP body, or spliced into a
`save_ack` frame) instead of decoding and encoding each again. On the channel a message holds
one `<request id> <ack JSON>` line per acknowledgement (ids are hex; JSON escapes newlines).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from ..base import fast_json
from ..store import keys

log = logging.getLogger(__name__)


# How often the listener reads the ack record while requests wait: a read of a key that
# mostly does not exist, about the cost of one save's round trip, once a second.
RECOVER_EVERY_SECONDS = 1.0


def channel(node_id: str) -> str:
    return f"acks:{node_id}"


def encode_ack(ack: Mapping[str, Any]) -> bytes:
    """The acknowledgement as the client receives it."""
    return fast_json.dumps(ack)


def parse_message(data: str | bytes) -> list[tuple[str, bytes]]:
    """(request id, ack JSON) for each line of a channel message; malformed lines skipped."""
    raw = data.encode() if isinstance(data, str) else data
    found = []
    for line in raw.split(b"\n"):
        rid, _, ack = line.partition(b" ")
        if rid and ack.startswith(b"{"):
            found.append((rid.decode("ascii", "replace"), ack))
    return found


class AckHub:
    def __init__(self, redis: Redis, node_id: str, timeout: float) -> None:
        self.redis = redis
        self.node_id = node_id
        self.timeout = timeout  # how long a request waits for its ack
        self._waiting: dict[str, asyncio.Future[bytes]] = {}
        # Deadlines in the order they were set, which is the order they come due (one timeout
        # for all): one timer for the first, not one set and cancelled per save.
        self._deadlines: deque[tuple[float, str]] = deque()
        self._timer: asyncio.Handle | None = None

    def expect(self, rid: str) -> asyncio.Future[bytes]:
        """A future for `rid`'s ack; it fails with TimeoutError if none comes in time."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        self._waiting[rid] = future
        self._deadlines.append((loop.time() + self.timeout, rid))
        if self._timer is None:
            self._timer = loop.call_at(self._deadlines[0][0], self._expire)
        return future

    def forget(self, rid: str) -> None:
        future = self._waiting.pop(rid, None)
        if future is not None and future.done() and not future.cancelled():
            future.exception()  # a timeout nobody awaited (queueing failed first) is no error

    def _expire(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time() + 0.001  # the loop may run a timer a hair early
        while self._deadlines and self._deadlines[0][0] <= now:
            future = self._waiting.get(self._deadlines.popleft()[1])
            if future is not None and not future.done():
                future.set_exception(TimeoutError())
        self._timer = loop.call_at(self._deadlines[0][0], self._expire) if self._deadlines else None

    def resolve(self, rid: str, ack: bytes) -> None:
        future = self._waiting.pop(rid, None)
        if future is not None and not future.done():
            future.set_result(ack)

    def publish_remote(
        self, acks: Mapping[str, Mapping[str, bytes]], pipe: Pipeline
    ) -> list[tuple[str, bytes]]:
        """`{node: {rid: ack JSON}}`: queue other processes' acks on `pipe`, to go out when its
        owner executes it (with the XACKs that must precede them, in one round trip). Returns
        (node, message) per PUBLISH queued, in order: they are the pipeline's last commands,
        whose replies `record_unheard` takes."""
        published = self._messages(acks)
        for node, lines in published:
            pipe.publish(channel(node), lines)
        return published

    def _messages(self, acks: Mapping[str, Mapping[str, bytes]]) -> list[tuple[str, bytes]]:
        """(node, channel message) for each other process's acks."""
        return [
            (node, b"\n".join(rid.encode() + b" " + ack for rid, ack in by_rid.items()))
            for node, by_rid in acks.items()
            if node != self.node_id
        ]

    async def record_remote(self, acks: Mapping[str, Mapping[str, bytes]]) -> None:
        """Keep other processes' acks in their records, published or not: after a round trip
        whose reply was lost, nobody knows whether its PUBLISHes went out, or were heard."""
        messages = self._messages(acks)
        await self.record_unheard(messages, [0] * len(messages))

    async def record_unheard(
        self, published: Sequence[tuple[str, bytes]], heard: Sequence[Any]
    ) -> None:
        """Keep the messages no listener heard (PUBLISH replied 0) in their ack records."""
        unheard = [
            (node, lines) for (node, lines), n in zip(published, heard, strict=True) if n == 0
        ]
        if not unheard:
            return
        keep_ms = max(1000, int(self.timeout * 1000))
        oldest = int(time.time() * 1000) - keep_ms
        async with self.redis.pipeline(transaction=False) as pipe:
            for node, lines in unheard:
                record = keys.ack_record(node)
                pipe.xadd(record, {"a": lines}, minid=oldest, approximate=True)
                pipe.pexpire(record, 2 * keep_ms)  # a process that is gone has no reader
            await pipe.execute()

    def resolve_local(self, acks: Mapping[str, Mapping[str, bytes]]) -> None:
        for rid, ack in acks.get(self.node_id, {}).items():
            self.resolve(rid, ack)

    async def recover(self) -> int:
        """Resolve the waiting requests whose acks the record holds (published while we were
        not subscribed); how many. Called after each subscribe and every second meanwhile."""
        if not self._waiting:
            return 0
        oldest = int(time.time() * 1000) - max(1000, int(self.timeout * 1000)) - 1000
        entries: Any = await self.redis.xrange(keys.ack_record(self.node_id), min=oldest)
        resolved = 0
        for _, fields in entries:
            for rid, ack in parse_message(fields.get("a", b"")):
                future = self._waiting.get(rid)
                if future is not None and not future.done():
                    self.resolve(rid, ack)
                    resolved += 1
        if resolved:
            log.warning("ack listener: %d acks recovered from the record", resolved)
        return resolved

    async def listen(self, ready: asyncio.Event | None = None) -> None:
        """Resolve acknowledgements that other processes' persisters publish for us."""
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(channel(self.node_id))
                    await self.recover()
                    if ready is not None:
                        ready.set()
                    loop = asyncio.get_running_loop()
                    due = loop.time() + RECOVER_EVERY_SECONDS
                    while True:
                        message = await pubsub.get_message(timeout=RECOVER_EVERY_SECONDS)
                        if message is not None:
                            for rid, ack in parse_message(message["data"]):
                                self.resolve(rid, ack)
                        if loop.time() >= due:
                            due = loop.time() + RECOVER_EVERY_SECONDS
                            await self.recover()
            except asyncio.CancelledError:
                raise
            except (RedisError, ValueError) as exc:
                log.warning("ack listener: %s; resubscribing in 1 s", exc)
                await asyncio.sleep(1)
