"""Waiting for the commit: the request that queued a save waits here for its acknowledgement.

The persister that commits a save may run in another process. It answers the receiving
process on its channel `acks:{node_id}` (Redis pub/sub), or, when the save was received by its
own process, resolves the waiting request directly. An acknowledgement that never comes (a
process died mid-way) ends in a timeout: the client retries, and the version rules make the
retry a harmless `duplicate`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


def channel(node_id: str) -> str:
    return f"acks:{node_id}"


class AckHub:
    def __init__(self, redis: Redis, node_id: str) -> None:
        self.redis = redis
        self.node_id = node_id
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def expect(self, rid: str) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        return future

    def forget(self, rid: str) -> None:
        self._waiting.pop(rid, None)

    def resolve(self, rid: str, ack: dict[str, Any]) -> None:
        future = self._waiting.pop(rid, None)
        if future is not None and not future.done():
            future.set_result(ack)

    def publish_remote(self, acks: Mapping[str, Mapping[str, Any]], pipe: Pipeline) -> None:
        """`{node: {rid: ack}}`: queue other processes' acks on `pipe`, to go out when its
        owner executes it (with the XACKs that must precede them, in one round trip)."""
        for node, by_rid in acks.items():
            if node != self.node_id:
                pipe.publish(channel(node), json.dumps(by_rid, ensure_ascii=False))

    def resolve_local(self, acks: Mapping[str, Mapping[str, Any]]) -> None:
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
                        for rid, ack in json.loads(message["data"]).items():
                            self.resolve(rid, ack)
            except asyncio.CancelledError:
                raise
            except (RedisError, ValueError) as exc:
                log.warning("ack listener: %s; resubscribing in 1 s", exc)
                await asyncio.sleep(1)
