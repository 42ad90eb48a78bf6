"""Fan-out: events from the broadcast streams to this process's sockets.

Every socket-server process reads `queue:exam_end` and `socket_queue` in full (XREAD, no
consumer group), so an event reaches the sockets of every process (seed 001 §2, seed 004 §10.3).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from websockets.asyncio.server import broadcast

from examsync.frames import exam_end_message

from ..base.tasks import cancel_requested
from ..store import keys
from .audience import Audience, event_frame
from .registry import Registry

log = logging.getLogger(__name__)

STREAMS = (keys.EXAM_END_STREAM, keys.SOCKET_STREAM)


async def latest_ids(redis: Redis) -> dict[str, str]:
    """Where each stream ends now: fan-out delivers what comes after."""
    positions: dict[str, str] = {}
    for stream in STREAMS:
        last: Any = await redis.xrevrange(stream, count=1)
        positions[stream] = last[0][0] if last else "0-0"
    return positions


def deliver(registry: Registry, stream: str, entry_id: str, fields: dict[str, str]) -> int:
    """Send one stream entry to the sockets it is for; returns how many sockets."""
    if stream == keys.EXAM_END_STREAM:
        plan_id = fields.get("examId", "")
        message = exam_end_message(plan_id, fields.get("timestamp"))
        registry.ended[plan_id] = fields.get("timestamp")  # for sockets that come later
        targets = list(registry.plan(plan_id))
    else:
        message = event_frame(entry_id, fields)
        targets = list(registry.targets(Audience.of(fields)))
    if targets:
        text = json.dumps(message, ensure_ascii=False)
        # No garbage collection inside a broadcast: at 10,000 sockets a full collection would
        # hold up the sockets after it (docs/server.md, "Socket performance"); it runs after.
        collecting = gc.isenabled()
        gc.disable()
        try:
            broadcast(targets, text)
        finally:
            if collecting:
                gc.enable()
    return len(targets)


async def run_fanout(redis: Redis, registry: Registry, ready: asyncio.Event | None = None) -> None:
    positions: dict[str, str] | None = None
    while not cancel_requested():
        try:
            if positions is None:
                # Kept in the registry: a socket added now gets live what comes after these.
                registry.delivered.update(await latest_ids(redis))
                positions = registry.delivered
                if ready is not None:
                    ready.set()
            # RESP2 with decode_responses: [[stream, [(id, {field: value})]]]
            batches: Any = await redis.xread(positions, block=1000, count=500)  # type: ignore[arg-type]
            for stream, entries in batches:
                for entry_id, fields in entries:
                    positions[stream] = entry_id
                    try:
                        deliver(registry, stream, entry_id, fields)
                    except (ValueError, KeyError, TypeError) as exc:
                        log.error("dropping malformed %s entry %s: %s", stream, entry_id, exc)
        except asyncio.CancelledError:
            raise
        except RedisError as exc:
            log.warning("fan-out cannot read Redis (%s); retrying in 1 s", exc)
            await asyncio.sleep(1)
