"""Seed 004 §10.5 connection state in Redis, written by the state manager alone.

    plan:{planId}:socket:examinee:{socketId}     examineeId, status, lastHeartbeat
    plan:{planId}:examinee:{examineeId}:progress  connStatusCode, lastActiveTime

One Lua script applies a `connection_status` message to both hashes and, when the examinee's
state changes, queues the supervisors' event on `socket_queue` — atomically, so the events
reach the supervisors in the order the state changed, whichever process handled each message.

Messages may be handled out of order (several processes consume the queue) and more than once
(a retry, a claimed message). The rules make that harmless:
- a socket's DISCONNECTED is final; anything for that socket handled after it is late and
  ignored. Except the sweeper's `SERVER_LOST`, a guess that the socket's process died: when
  that process's presence key exists as the guess is applied, it is ignored, and a CONNECTED
  the process sends while vouching for its sockets again takes it back (after Redis lost its
  data, a socket process re-asserts its open sockets: sockets/server.py);
- the examinee is CONNECTED while any of their sockets is (the set
  `plan:{planId}:examinee:{examineeId}:sockets`), so a late DISCONNECTED of an old socket cannot
  mark an examinee who has reconnected on a new one;
- a socket whose server process died (its presence key expired) never says goodbye: it is
  dropped from that set the next time the examinee's state is decided, and the sweeper
  (presence/sweeper.py) reports it DISCONNECTED (`SERVER_LOST`) for the examinee who does not
  come back. For that sweeper, the sockets held CONNECTED are indexed by their process:
  `socket_node:{node}:sockets` (members `[planId, examineeId, socketId]` as JSON) and the set of
  processes that have any, `socket_nodes`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

from redis.asyncio import Redis

from examsync.frames import examinee_connection_message, examinee_lost_message

from ..base.clock import iso, parse_iso, utc_now
from ..store import keys
from .status import CONNECTED, ConnectionStatus, node_of

# A closed socket's hash is kept this long (ms), then expires: long enough for any late
# message about that socket to find it final.
CLOSED_SOCKET_TTL_MS = 24 * 3600 * 1000

_APPLY = """
-- KEYS  1 socket hash, 2 progress hash, 3 live-sockets set, 4 socket_queue,
--       5 the socket's process's socket index, 6 the set of processes with sockets,
--       7 the disconnected examinees (by time), 8 the socket's process's presence key,
--       9.. hashes of sockets whose process died
-- ARGV  1 status, 2 socketId, 3 examineeId, 4 timestamp, 5 closed-socket TTL (ms),
--       6 event type, 7 planId, 8 groupId, 9 event JSON, 10 stream maxlen,
--       11 the socket's index member ('' when its id names no process), 12 its process,
--       13 timestamp in epoch ms, 14 the examinee's member in KEYS 7, 15 the reason,
--       16.. socket ids of KEYS 9..
-- Everything is read before anything is written: a key of the wrong type fails the call
-- before it has changed anything.
local status, now = ARGV[1], ARGV[4]
local held = redis.call('HMGET', KEYS[1], 'status', 'reason')
local vouched = ARGV[11] ~= '' and redis.call('EXISTS', KEYS[8]) == 1
if held[1] == 'DISCONNECTED' then
  if not (status == 'CONNECTED' and held[2] == 'SERVER_LOST' and vouched) then
    return 0
  end
  redis.call('PERSIST', KEYS[1])  -- the guess taken back: the socket is open after all
  redis.call('HDEL', KEYS[1], 'reason')
elseif status == 'DISCONNECTED' and ARGV[15] == 'SERVER_LOST' and vouched then
  -- the sweeper's guess, but the socket's process vouches for it again: back in the index
  -- the sweeper took it from, to be found if that process does die
  if held[1] == 'CONNECTED' then
    redis.call('SCARD', KEYS[5])
    redis.call('SCARD', KEYS[6])
    redis.call('SADD', KEYS[5], ARGV[11])
    redis.call('SADD', KEYS[6], ARGV[12])
  end
  return 0
end
local progress = redis.call('HMGET', KEYS[2], 'connStatusCode', 'lastActiveTime')
redis.call('SCARD', KEYS[3])
redis.call('SCARD', KEYS[5])
redis.call('SCARD', KEYS[6])
redis.call('ZCARD', KEYS[7])
redis.call('HSET', KEYS[1], 'examineeId', ARGV[3], 'status', status, 'lastHeartbeat', now)
if ARGV[11] ~= '' then
  if status == 'CONNECTED' then
    redis.call('SADD', KEYS[5], ARGV[11])
    redis.call('SADD', KEYS[6], ARGV[12])
  else
    redis.call('SREM', KEYS[5], ARGV[11])
  end
end
for i = 9, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HSET', KEYS[i], 'status', 'DISCONNECTED', 'reason', 'SERVER_LOST')
    redis.call('PEXPIRE', KEYS[i], ARGV[5])
  end
  redis.call('SREM', KEYS[3], ARGV[i + 7])
end
if status == 'CONNECTED' then
  redis.call('SADD', KEYS[3], ARGV[2])
else
  -- beside seed 004's fields, only a guess is marked: the one reason that can be taken back
  if ARGV[15] == 'SERVER_LOST' then redis.call('HSET', KEYS[1], 'reason', ARGV[15]) end
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  redis.call('SREM', KEYS[3], ARGV[2])
  if redis.call('SCARD', KEYS[3]) > 0 then
    return 1
  end
  if progress[1] == 'LOST' then
    return 1  -- lost is disconnected, and more: it stays lost until the examinee is back
  end
end
redis.call('HSET', KEYS[2], 'connStatusCode', status)
if not progress[2] or now > progress[2] then
  redis.call('HSET', KEYS[2], 'lastActiveTime', now)
end
if progress[1] == status then
  return 1
end
if status == 'CONNECTED' then
  redis.call('ZREM', KEYS[7], ARGV[14])
else
  redis.call('ZADD', KEYS[7], ARGV[13], ARGV[14])
end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[10], '*', 'type', ARGV[6], 'planId', ARGV[7],
  'candidateId', ARGV[3], 'groupId', ARGV[8], 'audience', 'supervisors', 'data', ARGV[9])
return 2
"""


_LOSE = """
-- KEYS  1 the disconnected examinees, 2 the examinee's progress hash, 3 socket_queue
-- ARGV  1 the examinee's member, 2 cutoff (epoch ms), 3 event JSON, 4 stream maxlen,
--       5 planId, 6 examineeId, 7 groupId
-- Once per examinee, whichever process gets there first: the member leaves the set here.
local since = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not since or tonumber(since) > tonumber(ARGV[2]) then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('HGET', KEYS[2], 'connStatusCode') ~= 'DISCONNECTED' then
  return 0
end
redis.call('HSET', KEYS[2], 'connStatusCode', 'LOST')
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'type', 'examinee_lost', 'planId',
  ARGV[5], 'candidateId', ARGV[6], 'groupId', ARGV[7], 'audience', 'supervisors', 'data', ARGV[3])
return 1
"""


class Applied(IntEnum):
    LATE = 0  # the socket had already closed: nothing changed
    STATE = 1  # the socket's state changed, the examinee's did not
    ANNOUNCED = 2  # the examinee's state changed and the supervisors' event is queued


def supervisor_event(status: ConnectionStatus, group_id: str | None) -> dict[str, Any]:
    """`examinee_connected` / `examinee_disconnected` (seed 004 §10.3) as supervisors get it."""
    return examinee_connection_message(
        status.plan_id,
        status.examinee_id,
        group_id,
        status.socket_id,
        status.status,
        status.timestamp,
        reason=status.reason,
        client_info=status.client_info,
    )


def examinee_member(plan_id: str, examinee_id: str, group_id: str | None) -> str:
    """An examinee's entry among the disconnected (the lost watch reads who and whose)."""
    return json.dumps([plan_id, examinee_id, group_id or ""], ensure_ascii=False)


def node_member(status: ConnectionStatus) -> str:
    """A socket's entry in its process's index: enough to report it closed."""
    return json.dumps([status.plan_id, status.examinee_id, status.socket_id], ensure_ascii=False)


class ConnectionState:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._apply = redis.register_script(_APPLY)
        self._lose = redis.register_script(_LOSE)

    async def apply(self, status: ConnectionStatus, group_id: str | None) -> Applied:
        dead = await self._sockets_of_dead_processes(status)
        event = supervisor_event(status, group_id)
        node = node_of(status.socket_id)
        result = await self._apply(
            keys=[
                keys.examinee_socket(status.plan_id, status.socket_id),
                keys.examinee_progress(status.plan_id, status.examinee_id),
                keys.examinee_sockets(status.plan_id, status.examinee_id),
                keys.SOCKET_STREAM,
                keys.node_sockets(node),
                keys.SOCKET_NODES,
                keys.DISCONNECTED_EXAMINEES,
                keys.socket_node(node),
                *(keys.examinee_socket(status.plan_id, s) for s in dead),
            ],
            args=[
                status.status,
                status.socket_id,
                status.examinee_id,
                status.timestamp,
                CLOSED_SOCKET_TTL_MS,
                event["type"],
                status.plan_id,
                group_id or "",
                json.dumps(event, ensure_ascii=False),
                keys.STREAM_MAXLEN,
                node_member(status) if node else "",
                node,
                int(parse_iso(status.timestamp).timestamp() * 1000),
                examinee_member(status.plan_id, status.examinee_id, group_id),
                status.reason or "",
                *dead,
            ],
        )
        return Applied(int(result))

    async def mark_lost(self, lost_after: float, limit: int = 500) -> int:
        """Examinees DISCONNECTED for `lost_after` seconds become LOST, each announced once
        (`examinee_lost` to their group's supervisors); returns how many."""
        now = utc_now()
        cutoff = int((now.timestamp() - lost_after) * 1000)
        due: Any = await self.redis.zrangebyscore(
            keys.DISCONNECTED_EXAMINEES, "-inf", cutoff, start=0, num=limit, withscores=True
        )
        lost = 0
        for member, since in due:
            try:
                plan_id, examinee_id, group_id = json.loads(member)
            except (ValueError, TypeError):
                await self.redis.zrem(keys.DISCONNECTED_EXAMINEES, member)
                continue
            event = examinee_lost_message(
                plan_id,
                examinee_id,
                group_id or None,
                iso(now),
                iso(datetime.fromtimestamp(since / 1000, UTC)),
                lost_after,
            )
            lost += int(
                await self._lose(
                    keys=[
                        keys.DISCONNECTED_EXAMINEES,
                        keys.examinee_progress(plan_id, examinee_id),
                        keys.SOCKET_STREAM,
                    ],
                    args=[
                        member,
                        cutoff,
                        json.dumps(event, ensure_ascii=False),
                        keys.STREAM_MAXLEN,
                        plan_id,
                        examinee_id,
                        group_id,
                    ],
                )
            )
        return lost

    async def _sockets_of_dead_processes(self, status: ConnectionStatus) -> list[str]:
        """The examinee's other sockets whose process no longer vouches for them. Only a
        DISCONNECTED needs them: it is the one that asks whether any socket is left."""
        if status.status == CONNECTED:
            return []
        members: Any = await self.redis.smembers(
            keys.examinee_sockets(status.plan_id, status.examinee_id)
        )
        others = sorted(m for m in members if m != status.socket_id and node_of(m))
        if not others:
            return []
        nodes = sorted({node_of(m) for m in others})
        async with self.redis.pipeline(transaction=False) as pipe:
            for node in nodes:
                pipe.exists(keys.socket_node(node))
            alive = dict(zip(nodes, await pipe.execute(), strict=True))
        return [m for m in others if not alive[node_of(m)]]
