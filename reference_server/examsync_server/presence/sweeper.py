"""The sweeper: what nobody reports — sockets of dead processes, examinees gone too long.

A socket-server process that is SIGKILLed (or loses power) reports none of its sockets closed,
and an examinee who never comes back would show CONNECTED for ever. Each process keeps its
presence key `socket_node:{node}` alive (presence/status.py); the state manager indexes the
sockets it holds CONNECTED by process (presence/connections.py). Every `interval` seconds the
sweeper looks for indexed processes whose presence key has expired and publishes, for each of
their sockets, a seed 004 `connection_status` DISCONNECTED with reason `SERVER_LOST` (an
HTTP poller that stopped polling, whose presence key is its own: `POLL_TIMEOUT`) on
`status_queue` — the socket server's own path, so the state manager applies it by the same
rules (an examinee who reconnected elsewhere stays CONNECTED) and tells the supervisors.

An examinee DISCONNECTED for `lost_after` seconds (no socket, no HTTP poll) becomes LOST
(seed 004 §10.5 "재연결 최대 시도 횟수 초과": the server cannot count a client's failed attempts,
so it counts the time they add up to): `connStatusCode` LOST and `examinee_lost` to the
group's supervisors, once (presence/connections.py).

Every process runs one; a lock that its holder renews keeps one sweeping at a time (another
takes over within two ticks of its death), and a message published twice is harmless (a
socket's DISCONNECTED is final). A socket is removed from the index only after its message is
on the stream, so a sweeper that dies mid-way leaves the rest to the next.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..base.clock import iso, utc_now
from ..base.tasks import cancel_requested
from ..store import keys
from .connections import ConnectionState
from .status import DISCONNECTED, ConnectionStatus, lost_reason

log = logging.getLogger(__name__)

LOCK = "socket_sweeper"
_HOLD = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
    or redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
_FORGET = """
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[1]) end
"""
BATCH = 500


async def run_sweeper(redis: Redis, node_id: str, tick: float, lost_after: float) -> None:
    hold = redis.register_script(_HOLD)
    state = ConnectionState(redis)
    while not cancel_requested():
        await asyncio.sleep(tick)
        try:
            if await hold(keys=[LOCK], args=[node_id, max(1000, int(tick * 2000))]):
                swept = await sweep(redis)
                if swept:
                    log.warning(
                        "reported %d sockets closed: their process or poller is gone", swept
                    )
                lost = await state.mark_lost(lost_after)
                if lost:
                    log.warning("%d examinees lost (disconnected for %.0f s)", lost, lost_after)
        except RedisError as exc:
            log.warning("sweeper: %s; next try in %.1f s", exc, tick)


async def sweep(redis: Redis) -> int:
    """Report the sockets of every process whose presence key is gone; how many were."""
    found: Any = await redis.smembers(keys.SOCKET_NODES)
    nodes: list[str] = sorted(found)
    if not nodes:
        return 0
    async with redis.pipeline(transaction=False) as pipe:
        for node in nodes:
            pipe.exists(keys.socket_node(node))
        alive = await pipe.execute()
    swept = 0
    for node, present in zip(nodes, alive, strict=True):
        if not present:
            swept += await _sweep_node(redis, node)
    return swept


async def _sweep_node(redis: Redis, node: str) -> int:
    index = keys.node_sockets(node)
    swept = 0
    while True:
        members: Any = await redis.srandmember(index, BATCH)
        if not members:
            break
        now = iso(utc_now())
        async with redis.pipeline(transaction=False) as pipe:
            for member in members:
                status = _lost(member, now, lost_reason(node))
                if status is not None:
                    pipe.xadd(
                        keys.STATUS_STREAM,
                        status.fields(),  # type: ignore[arg-type]
                        maxlen=keys.STREAM_MAXLEN,
                        approximate=True,
                    )
            pipe.srem(index, *members)
            await pipe.execute()
        swept += len(members)
    # Only when nothing came back meanwhile (a late CONNECTED of that process re-indexes it).
    await redis.eval(_FORGET, 2, index, keys.SOCKET_NODES, node)
    return swept


def _lost(member: str, now: str, reason: str) -> ConnectionStatus | None:
    try:
        plan_id, examinee_id, socket_id = json.loads(member)
    except (ValueError, TypeError):
        log.error("dropping unreadable socket index entry %r", member[:200])
        return None
    return ConnectionStatus(plan_id, examinee_id, socket_id, DISCONNECTED, now, reason=reason)
