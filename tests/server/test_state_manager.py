"""The state manager's rules (seed 004 §10.5) on the real Redis: messages in any order, a
socket of a dead process, a dead consumer's messages, retries and the dead letters."""

from __future__ import annotations

import itertools
import json
import sqlite3
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from examsync_server.config import Settings
from examsync_server.demo.sample import PLAN_ID
from examsync_server.presence.connections import Applied, ConnectionState
from examsync_server.presence.status import ConnectionStatus
from examsync_server.runtime import Runtime
from socket_peer import peer

from .conftest import eventually, load_plan, login, socket_url

EXAMINEE = "CAND202301"  # of GROUP01
PROGRESS = f"plan:{PLAN_ID}:examinee:{EXAMINEE}:progress"
SOCKETS = f"plan:{PLAN_ID}:examinee:{EXAMINEE}:sockets"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_changes(claim_idle_ms=300, max_persist_attempts=2)


def status(socket_id: str, kind: str, second: int) -> ConnectionStatus:
    return ConnectionStatus(
        PLAN_ID,
        EXAMINEE,
        socket_id,
        kind,
        f"2024-01-01T09:15:{second:02d}.000Z",
        reason="SOCKET_CLOSED" if kind == "DISCONNECTED" else None,
        client_info={"ipAddress": "10.0.0.1", "browserInfo": "Chrome 120.0"}
        if kind == "CONNECTED"
        else None,
    )


def socket_key(socket_id: str) -> str:
    return f"plan:{PLAN_ID}:socket:examinee:{socket_id}"


def examinee_events(sync_redis: Any) -> list[str]:
    return [f["type"] for _, f in sync_redis.xrange("socket_queue") if f["candidateId"] == EXAMINEE]


def reset(sync_redis: Any, *socket_ids: str) -> None:
    sync_redis.delete(PROGRESS, SOCKETS, "socket_queue", *map(socket_key, socket_ids))


async def test_any_order_of_two_sockets_messages_ends_in_the_same_state(
    runtime: Runtime, sync_redis: Any
) -> None:
    """Processes handle the queue concurrently, so messages may apply in any order. A late
    DISCONNECTED of the old socket never marks an examinee who reconnected on a new one."""
    state = ConnectionState(runtime.redis)
    sync_redis.set("socket_node:n1", "1")  # the sockets' process is alive
    old, new = "n1-old", "n1-new"
    c1, d1, c2, d2 = (
        status(old, "CONNECTED", 1),
        status(old, "DISCONNECTED", 2),
        status(new, "CONNECTED", 3),
        status(new, "DISCONNECTED", 4),
    )
    for messages, final in (([c1, d1, c2], "CONNECTED"), ([c1, d1, c2, d2], "DISCONNECTED")):
        for order in itertools.permutations(messages):
            reset(sync_redis, old, new)
            for message in order:
                await state.apply(message, "GROUP01")
            label = [(m.socket_id, m.status) for m in order]
            assert sync_redis.hget(PROGRESS, "connStatusCode") == final, label
            assert sync_redis.smembers(SOCKETS) == ({new} if final == "CONNECTED" else set())
            assert sync_redis.hget(socket_key(old), "status") == "DISCONNECTED", label
            # The supervisors hear each change of the examinee once, alternating, ending right.
            events = examinee_events(sync_redis)
            assert events and events[-1] == f"examinee_{final.lower()}", label
            assert all(a != b for a, b in itertools.pairwise(events)), label


async def test_repeats_and_late_messages_change_nothing(runtime: Runtime, sync_redis: Any) -> None:
    state = ConnectionState(runtime.redis)
    connected, closed = status("n1-a", "CONNECTED", 1), status("n1-a", "DISCONNECTED", 2)
    assert await state.apply(connected, "GROUP01") is Applied.ANNOUNCED
    assert await state.apply(connected, "GROUP01") is Applied.STATE  # a retry
    assert await state.apply(closed, "GROUP01") is Applied.ANNOUNCED
    before = (sync_redis.hgetall(PROGRESS), sync_redis.hgetall(socket_key("n1-a")))
    assert await state.apply(closed, "GROUP01") is Applied.LATE
    assert await state.apply(connected, "GROUP01") is Applied.LATE  # a replayed dead letter
    assert (sync_redis.hgetall(PROGRESS), sync_redis.hgetall(socket_key("n1-a"))) == before
    assert examinee_events(sync_redis) == ["examinee_connected", "examinee_disconnected"]


async def test_a_socket_of_a_process_that_died_does_not_hold_the_examinee_connected(
    runtime: Runtime, sync_redis: Any
) -> None:
    """A SIGKILLed process never reports its sockets closed; its presence key expires."""
    state = ConnectionState(runtime.redis)
    sync_redis.set("socket_node:alive", "1")
    await state.apply(status("dead-1", "CONNECTED", 1), "GROUP01")  # no socket_node:dead
    await state.apply(status("alive-1", "CONNECTED", 2), "GROUP01")
    await state.apply(status("alive-1", "DISCONNECTED", 3), "GROUP01")
    assert sync_redis.hget(PROGRESS, "connStatusCode") == "DISCONNECTED"
    assert sync_redis.smembers(SOCKETS) == set()
    assert sync_redis.hget(socket_key("dead-1"), "status") == "DISCONNECTED"
    assert sync_redis.ttl(socket_key("dead-1")) > 0
    # While its process lives, another socket does keep the examinee connected.
    reset(sync_redis, "dead-1", "alive-1", "alive-2")
    await state.apply(status("alive-1", "CONNECTED", 4), "GROUP01")
    await state.apply(status("alive-2", "CONNECTED", 5), "GROUP01")
    await state.apply(status("alive-1", "DISCONNECTED", 6), "GROUP01")
    assert sync_redis.hget(PROGRESS, "connStatusCode") == "CONNECTED"
    assert sync_redis.smembers(SOCKETS) == {"alive-2"}


async def test_a_dead_consumers_messages_are_claimed_and_applied(
    client: Client, admin: dict[str, str], sync_redis: Any
) -> None:
    await load_plan(client, admin)
    message = status("n1-claimed", "CONNECTED", 1)
    # Queued and taken by a consumer that then died, in one transaction so that the live
    # state manager, blocked on the stream, cannot take it first.
    with sync_redis.pipeline(transaction=True) as pipe:
        pipe.xadd("status_queue", message.fields())
        pipe.xreadgroup("state_managers", "dead-consumer", {"status_queue": ">"}, count=1)
        pipe.execute()
    assert sync_redis.xpending("status_queue", "state_managers")["consumers"] == [
        {"name": "dead-consumer", "pending": 1}
    ]
    await eventually(lambda: sync_redis.hget(PROGRESS, "connStatusCode") == "CONNECTED")
    await eventually(lambda: sync_redis.xlen("status_queue") == 0)
    assert sync_redis.hgetall(socket_key("n1-claimed")) == {
        "examineeId": EXAMINEE,
        "status": "CONNECTED",
        "lastHeartbeat": message.timestamp,
    }
    assert examinee_events(sync_redis) == ["examinee_connected"]


async def test_a_message_that_keeps_failing_is_dead_lettered_alerted_and_replayed(
    client: Client,
    admin: dict[str, str],
    runtime: Runtime,
    sync_redis: Any,
    db: sqlite3.Connection,
) -> None:
    await load_plan(client, admin)
    sup1 = await login(
        client, {"planId": PLAN_ID, "supervisorId": "SUP202301", "authCode": "SUPAUTH01"}
    )
    sync_redis.set(PROGRESS, "not a hash")  # every attempt fails: WRONGTYPE
    message = status("n1-poison", "CONNECTED", 1)
    async with peer(socket_url(runtime), sup1["token"]) as supervisor:
        sync_redis.xadd("status_queue", message.fields())
        alert = await supervisor.next_of("alert", timeout=5)
    assert alert["kind"] == "dead_letter" and alert["candidateId"] == EXAMINEE
    assert alert["stream"] == "status_queue" and "WRONGTYPE" in alert["error"]
    assert sync_redis.xrange("queue:alerts")[-1][1]["stream"] == "status_queue"
    # Recorded and announced first, taken off the queue after: never dropped unrecorded.
    await eventually(lambda: sync_redis.xlen("status_queue") == 0)
    assert not sync_redis.exists(socket_key("n1-poison"))  # nothing half applied
    row = db.execute("SELECT plan_id, stream, attempts, fields FROM dead_letter").fetchone()
    assert (row["plan_id"], row["stream"], row["attempts"]) == (PLAN_ID, "status_queue", 2)
    assert json.loads(row["fields"]) == message.fields()

    listing = await (
        await client.get(f"/api/v1/admin/plans/{PLAN_ID}/dead-letters", headers=admin)
    ).get_json()
    [letter] = listing["deadLetters"]
    assert letter["candidateId"] == EXAMINEE
    sync_redis.delete(PROGRESS)
    replay = await client.post(
        f"/api/v1/admin/plans/{PLAN_ID}/dead-letters/replay", json={}, headers=admin
    )
    assert (await replay.get_json())["replayed"] == [letter["id"]]
    await eventually(lambda: sync_redis.hget(PROGRESS, "connStatusCode") == "CONNECTED")


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "connection_status", "data": "{broken"},
        {"type": "status_update", "data": "{}"},
        {"type": "connection_status", "planId": PLAN_ID, "data": json.dumps({"planId": PLAN_ID})},
        {
            "type": "connection_status",
            "data": json.dumps(
                {**status("s", "CONNECTED", 1).data(), "status": "ONLINE"}, ensure_ascii=False
            ),
        },
    ],
    ids=["not-json", "other-type", "fields-missing", "unknown-status"],
)
async def test_an_unreadable_message_goes_straight_to_the_dead_letters(
    client: Client,
    admin: dict[str, str],
    sync_redis: Any,
    db: sqlite3.Connection,
    fields: dict[str, str],
) -> None:
    await load_plan(client, admin)
    sync_redis.xadd("status_queue", fields)
    await eventually(lambda: db.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0] == 1)
    row = db.execute("SELECT error, attempts FROM dead_letter").fetchone()
    assert "unreadable" in row["error"] and row["attempts"] == 1
    await eventually(lambda: sync_redis.xlen("status_queue") == 0)
