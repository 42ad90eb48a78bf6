"""The sweeper: sockets of a server process whose presence key expired are reported
DISCONNECTED (SERVER_LOST) through status_queue, by the state manager's own rules."""

from __future__ import annotations

import json
from typing import Any

from examsync_server.demo.sample import PLAN_ID
from examsync_server.presence.connections import ConnectionState
from examsync_server.presence.status import ConnectionStatus
from examsync_server.presence.sweeper import sweep
from examsync_server.runtime import Runtime

from .conftest import eventually


def connected(examinee: str, socket_id: str) -> ConnectionStatus:
    return ConnectionStatus(
        PLAN_ID, examinee, socket_id, "CONNECTED", "2024-01-01T09:00:00.000Z", client_info={}
    )


def conn_status(sync_redis: Any, examinee: str) -> str:
    return str(sync_redis.hget(f"plan:{PLAN_ID}:examinee:{examinee}:progress", "connStatusCode"))


async def test_the_sockets_of_a_dead_process_are_reported_lost(
    runtime: Runtime, sync_redis: Any
) -> None:
    state = ConnectionState(runtime.redis)
    sync_redis.set("socket_node:alive", "1")  # "gone" has no presence key: it died
    await state.apply(connected("CAND202301", "gone-s1"), "GROUP01")  # only on the dead one
    await state.apply(connected("CAND202303", "gone-s2"), "GROUP01")  # moved to a live one
    await state.apply(connected("CAND202303", "alive-s3"), "GROUP01")
    await state.apply(connected("CAND202305", "alive-s4"), "GROUP01")
    assert sync_redis.smembers("socket_nodes") == {"gone", "alive"}
    assert sync_redis.smembers("socket_node:gone:sockets") == {
        json.dumps([PLAN_ID, "CAND202301", "gone-s1"]),
        json.dumps([PLAN_ID, "CAND202303", "gone-s2"]),
    }

    assert await sweep(runtime.redis) == 2
    await eventually(lambda: conn_status(sync_redis, "CAND202301") == "DISCONNECTED")
    await eventually(lambda: sync_redis.xlen("status_queue") == 0)
    assert conn_status(sync_redis, "CAND202303") == "CONNECTED"  # still on alive-s3
    assert conn_status(sync_redis, "CAND202305") == "CONNECTED"
    lost = [
        json.loads(f["data"])
        for _, f in sync_redis.xrange("socket_queue")
        if f["type"] == "examinee_disconnected"
    ]
    assert [(e["examineeId"], e["socketId"], e["reason"]) for e in lost] == [
        ("CAND202301", "gone-s1", "SERVER_LOST")
    ]
    assert sync_redis.hget(f"plan:{PLAN_ID}:socket:examinee:gone-s2", "status") == "DISCONNECTED"
    # The dead process is forgotten; the live one's index is untouched; a second sweep is idle.
    assert sync_redis.smembers("socket_nodes") == {"alive"}
    assert not sync_redis.exists("socket_node:gone:sockets")
    assert len(sync_redis.smembers("socket_node:alive:sockets")) == 2
    assert await sweep(runtime.redis) == 0


async def test_closed_sockets_leave_the_index(runtime: Runtime, sync_redis: Any) -> None:
    state = ConnectionState(runtime.redis)
    await state.apply(connected("CAND202301", "n1-a"), "GROUP01")
    await state.apply(
        ConnectionStatus(
            PLAN_ID,
            "CAND202301",
            "n1-a",
            "DISCONNECTED",
            "2024-01-01T09:00:01.000Z",
            reason="SOCKET_CLOSED",
        ),
        "GROUP01",
    )
    assert not sync_redis.exists("socket_node:n1:sockets")
    assert await sweep(runtime.redis) == 0  # n1 is not alive either, but has nothing left
    assert sync_redis.smembers("socket_nodes") == set()
