"""Waiting for the commit: the request that queued a save waits here for its acknowledgement.

The persister that commits a save may run in another process. It answers the receiving
process on its channel `acks:{node_id}` (Redis pub/sub), or, when the save was received by its
own process, resolves the waiting request directly. An acknowledgement that never comes (a
process died mid-way) ends in a timeout: the client retries, and the edit rule makes the
retry a harmless `duplicate`.

An acknowledgement travels as the JSON bytes the client receives, encoded once by the
persister: the receiving process sends them on as they are (the HTTP body, or spliced into a
`save_ack` frame) instead of decoding and encoding each again. On the channel a message holds
one `<request id> <ack JSON>` line per acknowledgement (ids are hex; JSON escapes newlines).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from ..base import fast_json

log = logging.getLogger(__name__)


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

    def publish_remote(self, acks: Mapping[str, Mapping[str, bytes]], pipe: Pipeline) -> None:
        """`{node: {rid: ack JSON}}`: queue other processes' acks on `pipe`, to go out when its
        owner executes it (with the XACKs that must precede them, in one round trip)."""
        for node, by_rid in acks.items():
            if node != self.node_id:
                lines = b"\n".join(rid.encode() + b" " + ack for rid, ack in by_rid.items())
                pipe.publish(channel(node), lines)

    def resolve_local(self, acks: Mapping[str, Mapping[str, bytes]]) -> None:
        for rid, ack in acks.get(self.node_id, {}).items():
            self.resolve(rid, ack)

    async def listen(self, ready: asyncio.Event | None = None) -> None:
        """Resolve acknowledgements that other processes' persisters publish for us."""
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(channel(self.node_id))
                    if ready is not None:
                        ready.set()
                    async for message in pubsub.listen():
                        for rid, ack in parse_message(message["data"]):
                            self.resolve(rid, ack)
            except asyncio.CancelledError:
                raise
            except (RedisError, ValueError) as exc:
                log.warning("ack listener: %s; resubscribing in 1 s", exc)
                await asyncio.sleep(1)
