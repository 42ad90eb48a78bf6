"""Presence after Redis loses its data (issue 15, defect 2), on real sockets, Redis and SQLite:
a socket process re-asserts the sockets it holds, no open socket stays reported lost, and a
later real close reaches the supervisors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from examsync_server.demo.sample import PLAN_ID
from examsync_server.presence.connections import Applied, ConnectionState
from examsync_server.presence.status import CONNECTED, DISCONNECTED, SERVER_LOST, ConnectionStatus
from examsync_server.presence.sweeper import sweep
from examsync_server.runtime import Runtime
from examsync_server.store import keys
from socket_peer import Peer, peer

from .conftest import eventually, load_plan, login, socket_url

PING = 0.3
CANDIDATE = {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"}  # GROUP01
SUPERVISOR = {"planId": PLAN_ID, "supervisorId": "SUP202301", "authCode": "SUPAUTH01"}
PROGRESS_KEY = f"plan:{PLAN_ID}:examinee:CAND202301:progress"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"ping_interval": PING, "ping_timeout": PING}


async def tokens(client: Client, admin: dict[str, str]) -> tuple[str, str]:
    await load_plan(client, admin)
    return (await login(client, CANDIDATE))["token"], (await login(client, SUPERVISOR))["token"]


def seen(supervisor: Peer) -> list[tuple[str, str | None]]:
    """The examinee's connection events the supervisor got: (status, reason)."""
    return [
        (f["status"], f.get("reason"))
        for f in supervisor.frames
        if f["type"] in ("examinee_connected", "examinee_disconnected")
    ]


def progress(sync_redis: Any) -> str | None:
    found: str | None = sync_redis.hget(PROGRESS_KEY, "connStatusCode")
    return found


async def test_after_a_wipe_open_sockets_are_connected_again_and_their_close_is_reported(
    client: Client, admin: dict[str, str], runtime: Runtime, sync_redis: Any
) -> None:
    cand, sup = await tokens(client, admin)
    url = socket_url(runtime)
    async with peer(url, sup) as supervisor:
        async with peer(url, cand) as candidate:
            await supervisor.next_of("examinee_connected")
            sync_redis.flushall()  # Redis lost everything: a wipe, an empty replica
            await eventually(lambda: progress(sync_redis) == "CONNECTED")
            socket = sync_redis.hgetall(keys.examinee_socket(PLAN_ID, candidate.socket_id))
            assert socket["status"] == "CONNECTED"
            node = candidate.socket_id.rpartition("-")[0]
            member = json.dumps([PLAN_ID, "CAND202301", candidate.socket_id])
            assert sync_redis.sismember(keys.node_sockets(node), member)
            assert sync_redis.exists(keys.socket_node(node))  # the sweeper sees it alive
            await supervisor.next_of("examinee_connected", after=1)
        await eventually(lambda: progress(sync_redis) == "DISCONNECTED")
        await supervisor.next_of("examinee_disconnected")
    assert seen(supervisor) == [
        ("CONNECTED", None),
        ("CONNECTED", None),  # told again: the wipe took what the dashboard was built from
        ("DISCONNECTED", "SOCKET_CLOSED"),
    ]


async def test_a_socket_the_sweeper_took_for_lost_is_taken_back_and_its_close_reported(
    client: Client, admin: dict[str, str], runtime: Runtime, sync_redis: Any
) -> None:
    """Redis forgot the process's presence key (it expired while Redis was away, or a wipe):
    the sweeper reports its open socket SERVER_LOST. The process, alive, vouches again and
    re-asserts the socket, which the state manager takes back from the sweeper's guess."""
    cand, sup = await tokens(client, admin)
    url = socket_url(runtime)
    async with peer(url, sup) as supervisor:
        async with peer(url, cand) as candidate:
            await supervisor.next_of("examinee_connected")
            node = candidate.socket_id.rpartition("-")[0]
            await eventually(lambda: sync_redis.smembers(keys.SOCKET_NODES) == {node})
            sync_redis.delete(keys.socket_node(node))
            await sweep(runtime.redis)  # the sweeper's guess: that process died
            await eventually(lambda: sync_redis.exists(keys.socket_node(node)) == 1)
            await eventually(lambda: progress(sync_redis) == "CONNECTED")
            await eventually(
                lambda: (
                    sync_redis.hget(keys.examinee_socket(PLAN_ID, candidate.socket_id), "status")
                    == "CONNECTED"
                )
            )
            assert sync_redis.ttl(keys.examinee_socket(PLAN_ID, candidate.socket_id)) == -1
        await eventually(lambda: progress(sync_redis) == "DISCONNECTED")
        await eventually(lambda: seen(supervisor)[-1] == ("DISCONNECTED", "SOCKET_CLOSED"))
    events = seen(supervisor)
    assert events[0] == ("CONNECTED", None) and events[-1] == ("DISCONNECTED", "SOCKET_CLOSED")
    # Whether the guess reached the dashboard depends on who was first; it never has the
    # last word while the socket is open.
    assert events[1:-1] in ([], [("DISCONNECTED", "SERVER_LOST"), ("CONNECTED", None)])


def status_of(socket_id: str, status: str, reason: str | None = None) -> ConnectionStatus:
    return ConnectionStatus(
        PLAN_ID, "CAND202301", socket_id, status, "2024-01-01T09:00:00.000Z", reason=reason
    )


async def test_server_lost_is_the_one_disconnect_a_live_process_takes_back(
    runtime: Runtime, sync_redis: Any
) -> None:
    state = ConnectionState(runtime.redis)
    socket_key = keys.examinee_socket(PLAN_ID, "n1-s")
    member = json.dumps([PLAN_ID, "CAND202301", "n1-s"])
    sync_redis.set(keys.socket_node("n1"), "1")
    await state.apply(status_of("n1-s", CONNECTED), "GROUP01")
    # The sweeper took the socket from the index; by the time its guess is applied, the
    # process vouches again: ignored, and the socket is back in the index.
    sync_redis.srem(keys.node_sockets("n1"), member)
    assert await state.apply(status_of("n1-s", DISCONNECTED, SERVER_LOST), "G") == Applied.LATE
    assert sync_redis.hget(socket_key, "status") == "CONNECTED"
    assert sync_redis.sismember(keys.node_sockets("n1"), member)
    # Applied while the process's key was missing: disconnected, until the process says
    # CONNECTED again.
    sync_redis.delete(keys.socket_node("n1"))
    assert await state.apply(status_of("n1-s", DISCONNECTED, SERVER_LOST), "G") == Applied.ANNOUNCED
    assert progress(sync_redis) == "DISCONNECTED"
    assert await state.apply(status_of("n1-s", CONNECTED), "G") == Applied.LATE  # not vouched
    sync_redis.set(keys.socket_node("n1"), "1")
    assert await state.apply(status_of("n1-s", CONNECTED), "G") == Applied.ANNOUNCED
    assert sync_redis.hgetall(socket_key)["status"] == "CONNECTED"
    assert "reason" not in sync_redis.hgetall(socket_key) and sync_redis.ttl(socket_key) == -1
    # Any other DISCONNECTED stays final.
    await state.apply(status_of("n1-s", DISCONNECTED, "SOCKET_CLOSED"), "G")
    assert await state.apply(status_of("n1-s", CONNECTED), "G") == Applied.LATE
    assert progress(sync_redis) == "DISCONNECTED"
    assert "reason" not in sync_redis.hgetall(socket_key)  # seed 004's fields only
