"""Seed 004 (socket failure and recovery) in one process, on real sockets, Redis and SQLite:
the heartbeat, the `connection_status` messages, the state manager's Redis keys, and the
supervisors' events — to the examinee's group only."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from examsync_server.base.clock import parse_iso
from examsync_server.demo.sample import PLAN_ID
from examsync_server.runtime import Runtime
from socket_peer import peer

from .conftest import eventually, load_plan, login, socket_url

PING = 0.3  # interval and timeout: a silent peer is dropped within ~0.7 s

CANDIDATE = {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"}  # GROUP01
SUPERVISOR_01 = {"planId": PLAN_ID, "supervisorId": "SUP202301", "authCode": "SUPAUTH01"}
SUPERVISOR_02 = {"planId": PLAN_ID, "supervisorId": "SUP202302", "authCode": "SUPAUTH02"}

SOCKET_KEY = "plan:{plan}:socket:examinee:{socket}"
PROGRESS_KEY = f"plan:{PLAN_ID}:examinee:CAND202301:progress"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"ping_interval": PING, "ping_timeout": PING}


async def tokens(client: Client, admin: dict[str, str]) -> tuple[str, str, str]:
    await load_plan(client, admin)
    cand = await login(client, CANDIDATE)
    sup1 = await login(client, SUPERVISOR_01)
    sup2 = await login(client, SUPERVISOR_02)
    return cand["token"], sup1["token"], sup2["token"]


def statuses(sync_redis: Any) -> list[dict[str, Any]]:
    """status_queue as seed 004 §10.4 messages, after checking each entry's envelope."""
    found = []
    for _, fields in sync_redis.xrange("status_queue"):
        assert set(fields) == {"type", "planId", "candidateId", "data"}, fields
        data = json.loads(fields["data"])
        assert (fields["planId"], fields["candidateId"]) == (data["planId"], data["examineeId"])
        found.append({"type": fields["type"], "data": data})
    return found


def is_iso(text: str) -> bool:
    return text.endswith("Z") and parse_iso(text).utcoffset() is not None


# --- the socket server alone (no state manager consuming the queue) ------------------------------


@pytest.mark.parametrize(
    "settings_overrides", [{"ping_interval": PING, "ping_timeout": PING, "run_workers": False}]
)
async def test_a_candidate_socket_publishes_seed_004_messages_on_open_and_close(
    client: Client, admin: dict[str, str], runtime: Runtime, sync_redis: Any
) -> None:
    cand, sup1, _ = await tokens(client, admin)
    url = socket_url(runtime)
    async with peer(url, sup1):
        async with peer(url, cand) as c:
            assert c.welcome["pingInterval"] == PING and c.welcome["pingTimeout"] == PING
            await eventually(lambda: len(statuses(sync_redis)) == 1)
        await eventually(lambda: len(statuses(sync_redis)) == 2)
    await asyncio.sleep(0.2)
    connected, disconnected = statuses(sync_redis)  # the supervisor's socket publishes nothing
    assert connected == {
        "type": "connection_status",
        "data": {
            "planId": PLAN_ID,
            "examineeId": "CAND202301",
            "socketId": c.socket_id,
            "status": "CONNECTED",
            "timestamp": connected["data"]["timestamp"],
            "clientInfo": {
                "ipAddress": "127.0.0.1",
                "browserInfo": "Chrome 120.0",
                "userAgent": connected["data"]["clientInfo"]["userAgent"],
                "transport": "websocket",
            },
        },
    }
    assert "Chrome/120.0.6099.109" in connected["data"]["clientInfo"]["userAgent"]
    assert disconnected == {
        "type": "connection_status",
        "data": {
            "planId": PLAN_ID,
            "examineeId": "CAND202301",
            "socketId": c.socket_id,
            "status": "DISCONNECTED",
            "timestamp": disconnected["data"]["timestamp"],
            "reason": "SOCKET_CLOSED",
        },
    }
    assert is_iso(connected["data"]["timestamp"]) and is_iso(disconnected["data"]["timestamp"])
    assert connected["data"]["timestamp"] <= disconnected["data"]["timestamp"]


@pytest.mark.parametrize(
    "settings_overrides", [{"ping_interval": PING, "ping_timeout": PING, "run_workers": False}]
)
async def test_the_server_pings_and_drops_a_silent_socket_with_ping_timeout(
    client: Client, admin: dict[str, str], runtime: Runtime, sync_redis: Any
) -> None:
    cand, sup1, _ = await tokens(client, admin)
    url = socket_url(runtime)
    async with peer(url, sup1) as live, peer(url, cand, answer_pings=False) as frozen:
        opened = time.monotonic()
        ping = await frozen.next_of("ping", timeout=1)
        assert set(ping) == {"type", "ts"} and isinstance(ping["ts"], int)
        await asyncio.wait_for(frozen.closed.wait(), 2)
        took = time.monotonic() - opened
        assert frozen.close_code == 4408
        # The server's clock starts before the welcome is sent, ours after it arrived.
        assert 2 * PING - 0.05 <= took < 2 * PING + 0.5, took
        # The one answering pings stays, through several rounds.
        await asyncio.sleep(4 * PING)
        assert not live.closed.is_set() and len(live.of("ping")) >= 4
    await eventually(lambda: len(statuses(sync_redis)) == 2)
    await asyncio.sleep(0.2)
    _, gone = statuses(sync_redis)
    assert gone["data"]["status"] == "DISCONNECTED" and gone["data"]["reason"] == "PING_TIMEOUT"
    assert gone["data"]["socketId"] == frozen.socket_id  # and no second, SOCKET_CLOSED one


async def test_bad_frames_are_answered_and_any_frame_answers_a_ping(
    client: Client, admin: dict[str, str], runtime: Runtime
) -> None:
    cand, _, _ = await tokens(client, admin)
    async with peer(socket_url(runtime), cand, answer_pings=False) as c:
        # No pong, but a frame every 0.1 s: the server counts that as a sign of life.
        for i, (frame, code) in enumerate(
            [
                ("not json", "invalid_json"),
                (json.dumps([1]), "invalid_message"),
                (json.dumps({"type": 7}), "invalid_message"),
                (json.dumps({"type": "bogus"}), "unknown_type"),
            ]
            * 3
        ):
            await c.ws.send(frame)
            error = await c.next_of("error", after=i)
            assert error["error"]["code"] == code and error["error"]["message"]
            await asyncio.sleep(0.1)
        await c.ws.send(json.dumps({"type": "pong"}))  # a pong nobody asked for: no answer
        await c.ws.send(json.dumps({"type": "ping", "ts": "x"}))
        assert (await c.next_of("pong"))["ts"] == "x"
        assert not c.closed.is_set() and c.of("ping")


# --- end to end: socket server → status_queue → state manager → Redis → socket_queue → fan-out ---


def socket_hash(sync_redis: Any, socket_id: str) -> dict[str, str]:
    found: dict[str, str] = sync_redis.hgetall(SOCKET_KEY.format(plan=PLAN_ID, socket=socket_id))
    return found


def check_event(
    event: dict[str, Any], kind: str, socket_id: str, status: str, **extra: Any
) -> None:
    expected = {
        "type": kind,
        "planId": PLAN_ID,
        "examineeId": "CAND202301",
        "groupId": "GROUP01",
        "socketId": socket_id,
        "status": status,
        "timestamp": event["timestamp"],
        # the socket_queue entry's id, from which a reconnecting socket resumes
        "position": event["position"],
        **extra,
    }
    assert event == expected
    assert is_iso(event["timestamp"])
    assert re.fullmatch(r"\d+-\d+", event["position"])


async def test_a_drop_and_a_reconnect_reach_the_groups_supervisor_and_redis(
    client: Client, admin: dict[str, str], runtime: Runtime, sync_redis: Any
) -> None:
    cand, sup1, sup2 = await tokens(client, admin)
    url = socket_url(runtime)
    async with peer(url, sup1) as s1, peer(url, sup2) as s2:
        async with peer(url, cand) as first:
            joined = await s1.next_of("examinee_connected")
        left = await s1.next_of("examinee_disconnected")
        async with peer(url, cand) as second:
            back = await s1.next_of("examinee_connected", after=1)
            progress = sync_redis.hgetall(PROGRESS_KEY)
        await s1.next_of("examinee_disconnected", after=1)
        await asyncio.sleep(3 * PING)  # time for a stray event to reach the other group
        assert not s2.of("examinee_connected") and not s2.of("examinee_disconnected")

    info = joined["clientInfo"]
    assert info["ipAddress"] == "127.0.0.1" and info["browserInfo"] == "Chrome 120.0"
    check_event(joined, "examinee_connected", first.socket_id, "CONNECTED", clientInfo=info)
    check_event(
        left, "examinee_disconnected", first.socket_id, "DISCONNECTED", reason="SOCKET_CLOSED"
    )
    check_event(back, "examinee_connected", second.socket_id, "CONNECTED", clientInfo=info)
    assert second.socket_id != first.socket_id

    # seed 004 §10.5, field by field
    assert progress == {"connStatusCode": "CONNECTED", "lastActiveTime": back["timestamp"]}
    assert socket_hash(sync_redis, first.socket_id) == {
        "examineeId": "CAND202301",
        "status": "DISCONNECTED",
        "lastHeartbeat": left["timestamp"],
    }
    assert socket_hash(sync_redis, second.socket_id)["status"] == "DISCONNECTED"
    assert sync_redis.hgetall(PROGRESS_KEY)["connStatusCode"] == "DISCONNECTED"
    key = SOCKET_KEY.format(plan=PLAN_ID, socket=first.socket_id)
    assert 0 < sync_redis.ttl(key) <= 24 * 3600  # closed sessions expire
    # The queue: each message handled once, acknowledged and deleted.
    assert sync_redis.xlen("status_queue") == 0
    assert sync_redis.xpending("status_queue", "state_managers")["pending"] == 0
    # socket_queue carries the events addressed to the group's supervisors.
    entries = [(i, f) for i, f in sync_redis.xrange("socket_queue") if f["type"].startswith("exam")]
    events = [f for _, f in entries]
    assert [e["type"] for e in events] == [
        "examinee_connected",
        "examinee_disconnected",
        "examinee_connected",
        "examinee_disconnected",
    ]
    for entry in events:
        assert (entry["planId"], entry["candidateId"], entry["groupId"], entry["audience"]) == (
            PLAN_ID,
            "CAND202301",
            "GROUP01",
            "supervisors",
        )
    entry_id, fields = entries[1]
    assert {**json.loads(fields["data"]), "position": entry_id} == left


async def test_a_ping_timeout_shows_on_the_supervisors_dashboard_within_the_bound(
    client: Client, admin: dict[str, str], runtime: Runtime, sync_redis: Any
) -> None:
    cand, sup1, _ = await tokens(client, admin)
    url = socket_url(runtime)
    async with peer(url, sup1) as s1, peer(url, cand, answer_pings=False) as frozen:
        await s1.next_of("examinee_connected")
        opened = time.monotonic()
        event = await s1.next_of("examinee_disconnected", timeout=3)
        assert time.monotonic() - opened < 2 * PING + 0.6
    check_event(
        event, "examinee_disconnected", frozen.socket_id, "DISCONNECTED", reason="PING_TIMEOUT"
    )
    assert socket_hash(sync_redis, frozen.socket_id) == {
        "examineeId": "CAND202301",
        "status": "DISCONNECTED",
        "lastHeartbeat": event["timestamp"],
    }
    assert sync_redis.hgetall(PROGRESS_KEY) == {
        "connStatusCode": "DISCONNECTED",
        "lastActiveTime": event["timestamp"],
    }


async def test_two_sockets_of_one_examinee_keep_them_connected_until_both_close(
    client: Client, admin: dict[str, str], runtime: Runtime, sync_redis: Any
) -> None:
    """A second tab (or the mobile camera) adds a socket: closing one of them is no drop."""
    cand, sup1, _ = await tokens(client, admin)
    url = socket_url(runtime)
    async with peer(url, sup1) as s1:
        async with peer(url, cand):
            await s1.next_of("examinee_connected")
            async with peer(url, cand) as tab:
                await eventually(lambda: bool(socket_hash(sync_redis, tab.socket_id)))
            await eventually(
                lambda: socket_hash(sync_redis, tab.socket_id).get("status") == "DISCONNECTED"
            )
            await asyncio.sleep(0.2)
            assert sync_redis.hget(PROGRESS_KEY, "connStatusCode") == "CONNECTED"
            assert not s1.of("examinee_disconnected")
            assert len(s1.of("examinee_connected")) == 1
        await s1.next_of("examinee_disconnected")


async def test_a_supervisor_without_a_group_hears_of_every_group(
    client: Client, admin: dict[str, str], runtime: Runtime
) -> None:
    """The registry's rule, end to end: a plan-wide supervisor is addressed with each group."""
    from examsync_server.access.tokens import Principal

    cand, _, _ = await tokens(client, admin)
    assert runtime.sockets is not None
    plan_wide = runtime.tokens.issue(Principal("supervisor", PLAN_ID, "SUPALL", None))
    async with peer(socket_url(runtime), plan_wide) as everyone:
        async with peer(socket_url(runtime), cand):
            event = await everyone.next_of("examinee_connected")
    assert event["groupId"] == "GROUP01"
