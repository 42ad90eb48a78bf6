"""Seed 004 §10.4 `connection_status` messages: the socket server → `status_queue`.

On the stream an entry holds the seed message as `type` and `data` (its JSON), beside the
`planId` and `candidateId` it concerns, as every entry of the cross-plan streams does, so the
dead letters can say whose it is without decoding it.

Publishing never blocks a socket handler: messages wait in an ordered in-memory queue that one
task writes to Redis, retrying while Redis is away (a repeat is harmless: the state manager
applies each message idempotently). One socket's CONNECTED therefore always precedes its
DISCONNECTED on the stream. The same task keeps this process's presence key alive, by which the
state manager recognises sockets of a process that died without saying goodbye.

The presence key is also how a process learns that Redis lost its data (a wipe, a failover to
an empty replica, a restart without persistence, or an outage longer than the key's TTL): it is
set with GET every second and before every batch of messages, and a key found missing after the
first set means Redis forgot this process and, with it, the state of its sockets. `on_lost` is
then called (the socket server re-asserts every open socket's CONNECTED), after the key is back,
so the sweeper cannot take those sockets for a dead process's.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..base.clock import parse_iso
from ..base.tasks import cancel_requested
from ..store import keys

log = logging.getLogger(__name__)

TYPE = "connection_status"
CONNECTED = "CONNECTED"
DISCONNECTED = "DISCONNECTED"
SOCKET_CLOSED = "SOCKET_CLOSED"
PING_TIMEOUT = "PING_TIMEOUT"
SERVER_LOST = "SERVER_LOST"  # its server process died without reporting it (the sweeper)
STATUSES = (CONNECTED, DISCONNECTED)
LOSS_CHECK_SECONDS = 1.0  # how often at most the presence key is set (and checked)


class InvalidStatus(ValueError):
    """A status_queue entry that is not a seed 004 §10.4 message."""


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    plan_id: str
    examinee_id: str
    socket_id: str
    status: str
    timestamp: str
    reason: str | None = None  # DISCONNECTED: SOCKET_CLOSED, PING_TIMEOUT or SERVER_LOST
    client_info: Mapping[str, Any] | None = None  # CONNECTED: ipAddress, browserInfo, ...

    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "planId": self.plan_id,
            "examineeId": self.examinee_id,
            "socketId": self.socket_id,
            "status": self.status,
            "timestamp": self.timestamp,
        }
        if self.reason is not None:
            data["reason"] = self.reason
        if self.client_info is not None:
            data["clientInfo"] = dict(self.client_info)
        return data

    def message(self) -> dict[str, Any]:
        """The seed 004 §10.4 message."""
        return {"type": TYPE, "data": self.data()}

    def fields(self) -> dict[str, str]:
        """The stream entry."""
        return {
            "type": TYPE,
            "planId": self.plan_id,
            "candidateId": self.examinee_id,
            "data": json.dumps(self.data(), ensure_ascii=False),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> ConnectionStatus:
        if fields.get("type") != TYPE:
            raise InvalidStatus(f"type is {fields.get('type')!r}, not {TYPE!r}")
        try:
            data = json.loads(fields["data"])
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise InvalidStatus(f"data is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidStatus("data is not an object")
        text = {}
        for name in ("planId", "examineeId", "socketId", "status", "timestamp"):
            value = data.get(name)
            if not isinstance(value, str) or not value:
                raise InvalidStatus(f"data.{name} must be a non-empty string")
            text[name] = value
        try:
            moment = parse_iso(text["timestamp"])
        except ValueError:
            raise InvalidStatus("data.timestamp must be ISO 8601") from None
        if moment.utcoffset() is None:
            raise InvalidStatus("data.timestamp must have an offset")
        if text["status"] not in STATUSES:
            raise InvalidStatus(f"data.status must be one of {STATUSES}")
        reason = data.get("reason")
        client_info = data.get("clientInfo")
        if reason is not None and not isinstance(reason, str):
            raise InvalidStatus("data.reason must be a string")
        if client_info is not None and not isinstance(client_info, dict):
            raise InvalidStatus("data.clientInfo must be an object")
        return cls(
            text["planId"],
            text["examineeId"],
            text["socketId"],
            text["status"],
            text["timestamp"],
            reason,
            client_info,
        )


POLL_TIMEOUT = "POLL_TIMEOUT"  # an HTTP poller stopped polling (polling.py)
POLL_NODE_PREFIX = "http~"


def node_of(socket_id: str) -> str:
    """The process a socket id was issued by ("" when it does not say). An HTTP poller is a
    node of its own (`http~{planId}~{examineeId}`), alive while it polls."""
    return socket_id.rpartition("-")[0]


def poll_node(plan_id: str, examinee_id: str) -> str:
    return f"{POLL_NODE_PREFIX}{plan_id}~{examinee_id}"


def lost_reason(node: str) -> str:
    """Why a node's sockets are reported closed when its presence key is gone."""
    return POLL_TIMEOUT if node.startswith(POLL_NODE_PREFIX) else SERVER_LOST


@dataclass
class StatusPublisher:
    redis: Redis
    node_id: str
    # The presence key outlives a few missed refreshes, so a busy process is not taken for dead.
    presence_ttl: float
    # Called when Redis is found to have forgotten this process (see above); publishes again.
    on_lost: Callable[[], None] | None = None
    limit: int = 100_000
    _vouched: bool = False  # the presence key has been set once
    _queue: deque[dict[str, str]] = field(default_factory=deque)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def publish(self, status: ConnectionStatus) -> None:
        if len(self._queue) >= self.limit:
            dropped = self._queue.popleft()
            log.error("status queue full (Redis away?); dropped %s", dropped.get("data"))
        self._queue.append(status.fields())
        self._idle.clear()
        self._wake.set()

    async def run(self) -> None:
        # At least every second: a loss is noticed, and the sockets re-asserted, that soon.
        refresh = min(LOSS_CHECK_SECONDS, self.presence_ttl / 3)
        next_presence = 0.0
        loop = asyncio.get_running_loop()
        while not cancel_requested():
            try:
                if loop.time() >= next_presence:
                    self._vouch(await self._set_presence(self.redis))
                    next_presence = loop.time() + refresh
                while self._queue:
                    batch = list(islice(self._queue, 500))
                    async with self.redis.pipeline(transaction=False) as pipe:
                        # First: whoever applies these finds this process vouching for them.
                        self._set_presence(pipe)
                        for fields in batch:
                            pipe.xadd(
                                keys.STATUS_STREAM,
                                fields,  # type: ignore[arg-type]
                                maxlen=keys.STREAM_MAXLEN,
                                approximate=True,
                            )
                        replies = await pipe.execute()
                    for _ in batch:
                        self._queue.popleft()
                    self._vouch(replies[0])
            except RedisError as exc:
                log.warning("status publisher: %s; retrying in 1 s", exc)
                await asyncio.sleep(1)
                continue
            self._idle.set()
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_presence - loop.time()))
            except TimeoutError:
                pass

    def _set_presence(self, target: Any) -> Any:
        """SET this process's presence key with GET, on Redis or queued on a pipeline."""
        ttl_ms = int(self.presence_ttl * 1000)
        return target.set(keys.socket_node(self.node_id), "1", px=ttl_ms, get=True)

    def _vouch(self, previous: object) -> None:
        """After a SET ... GET of the presence key: a key missing once we had set it means
        Redis lost it (and what it held of our sockets)."""
        if previous is None and self._vouched:
            log.warning("Redis forgot this process's presence; re-asserting its sockets")
            if self.on_lost is not None:
                self.on_lost()
        self._vouched = True

    async def flush(self, timeout: float) -> None:
        """Wait (bounded) until everything published so far is on the stream."""
        if self._queue:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except TimeoutError:
                log.warning("%d connection statuses not published at stop", len(self._queue))

    async def leave(self) -> None:
        """This process stops: it no longer vouches for its sockets."""
        try:
            await self.redis.delete(keys.socket_node(self.node_id))
        except RedisError as exc:
            log.warning("presence key not removed: %s", exc)
