"""Events over HTTP for a client whose socket cannot get through (seed 004 §10.5 "복구 실패 시
대체 연결"): `GET /api/v1/events?after=<position>`.

A poll answers the events for the caller after `after`, by the rules a resuming socket gets
them (replay.py, audience.py), and the position to ask from next time:
`{"events": [...], "position": "…"}`, plus `"reload": "<reason>"` when the events after
`after` cannot be had (fetch the state afresh, go on from `position`). Without `after` it only
says where the stream stands. `exam_end` is state, not a stream event: a poll of an ended plan
carries it every time, as a socket gets it after its welcome.

A candidate who polls is connected, over `http`: the first poll of a session publishes
CONNECTED (seed 004, `clientInfo.transport = "http"`) for a pseudo-socket
`http~{planId}~{examineeId}-{random}`. The poller is a node of its own, whose presence key
`socket_node:http~{planId}~{examineeId}` each poll renews for `ping_interval + ping_timeout`;
when the polls stop, the key lapses and the sweeper reports the pseudo-socket DISCONNECTED
(`POLL_TIMEOUT`) — the same path as a socket server that died, so the state manager's rules
hold (an examinee back on a socket stays CONNECTED).
"""

from __future__ import annotations

import secrets
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from examsync.frames import exam_end_message

from ..access.tokens import Principal
from ..base.clock import iso, utc_now
from ..errors import ApiError
from ..exam.plan_status import PlanStatus
from ..presence.status import CONNECTED, ConnectionStatus, poll_node
from ..store import keys
from . import replay
from .client_info import describe

# KEYS 1 the poller's presence key, 2 status_queue. ARGV 1 a new pseudo-socket id, 2 TTL (ms),
# 3 stream maxlen, 4.. the CONNECTED entry's field/value pairs. Renews a live session, or
# starts one and queues its CONNECTED in the same step, so no session goes unannounced.
_TOUCH = """
local sid = redis.call('GET', KEYS[1])
if sid then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return sid
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
return ARGV[1]
"""


class EventPolling:
    def __init__(self, redis: Redis, alive_seconds: float) -> None:
        self.redis = redis
        self.alive_ms = int(alive_seconds * 1000)
        self._touch = redis.register_script(_TOUCH)

    async def poll(
        self, who: Principal, after: str | None, ip: str, user_agent: str
    ) -> dict[str, Any]:
        if after is not None:
            try:
                replay.position(after)
            except ValueError as exc:
                raise ApiError(400, "invalid_position", str(exc), {"after": after[:40]}) from None
        if who.role == "candidate":
            await self.touch(who, ip, user_agent)
        last: Any = await self.redis.xrevrange(replay.STREAM, count=1)
        upto = last[0][0] if last else "0-0"
        answer: dict[str, Any] = {"events": [], "position": upto}
        if after is not None and after != upto:
            try:
                await replay.check(self.redis, after)
                answer["events"] = await replay.missed(self.redis, who, after, upto)
            except replay.CannotReplay as exc:
                answer["reload"] = exc.reason
            except ResponseError as exc:
                raise ApiError(400, "invalid_position", str(exc)) from None
        plan: Any = await self.redis.hmget(keys.plan(who.plan_id), ["status", "end_datetime"])
        if plan[0] == PlanStatus.COMPLETED:
            answer["events"].append(exam_end_message(who.plan_id, plan[1]))
        return answer

    async def touch(self, who: Principal, ip: str, user_agent: str) -> str:
        """Renew the candidate's polling session, or start one (CONNECTED); its socket id."""
        node = poll_node(who.plan_id, who.subject_id)
        socket_id = f"{node}-{secrets.token_hex(6)}"
        status = ConnectionStatus(
            who.plan_id,
            who.subject_id,
            socket_id,
            CONNECTED,
            iso(utc_now()),
            client_info=describe(ip, user_agent, "http"),
        )
        pairs = [part for item in status.fields().items() for part in item]
        found: Any = await self._touch(
            keys=[keys.socket_node(node), keys.STATUS_STREAM],
            args=[socket_id, self.alive_ms, keys.STREAM_MAXLEN, *pairs],
        )
        return str(found)
