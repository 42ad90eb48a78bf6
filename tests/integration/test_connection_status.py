"""Seed 004 across `examsync serve` processes on one Redis: an examinee's socket on process A
drops and the supervisor of their group, connected to process B, sees it — by a close, by a
ping timeout, and after process A was SIGKILLed; another group's supervisor sees nothing; the
SDK's client answers the server's pings and stays connected."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from examsync import ConnectionChanged, ConnectionState
from examsync.cpython import ExamClient
from examsync_server.demo.sample import PLAN_ID, sample_package, sample_plan
from socket_peer import Peer, peer

from .conftest import ServerProcess, start_server
from .sdk_process import client_config

PING = 0.5
# An entry a killed process had read but not acknowledged is claimed by the other after
# CLAIM_IDLE_MS (30 s by default).
CLAIM_IDLE_MS = 1000
PING_ENV = {
    "EXAMSYNC_PING_INTERVAL": str(PING),
    "EXAMSYNC_PING_TIMEOUT": str(PING),
    "EXAMSYNC_CLAIM_IDLE_MS": str(CLAIM_IDLE_MS),
}
CANDIDATE = {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"}  # GROUP01
PROGRESS = f"plan:{PLAN_ID}:examinee:CAND202301:progress"


def assert_drained(live: Any, timeout: float = CLAIM_IDLE_MS / 1000 + 5.0) -> None:
    """status_queue handled and emptied. The state manager deletes an entry just after the
    Lua step that announced it, so a supervisor can hear of it a moment before; and one that a
    killed process had read is claimed by the other once it has been idle CLAIM_IDLE_MS."""
    deadline = time.monotonic() + timeout
    while live.xlen("status_queue") or live.xpending("status_queue", "state_managers")["pending"]:
        assert time.monotonic() < deadline, "status_queue not drained"
        time.sleep(0.05)


def prepared(server: ServerProcess) -> None:
    assert (
        server.admin(
            "PUT", f"/api/v1/admin/plans/{PLAN_ID}", json=sample_plan(candidates=4)
        ).status_code
        == 201
    )
    package = sample_package()
    response = server.admin(
        "PUT",
        f"/api/v1/admin/plans/{PLAN_ID}/package",
        content=package,
        headers={"X-Content-SHA256": hashlib.sha256(package).hexdigest()},
    )
    assert response.status_code == 200, response.text
    for step in ("prepare", "start"):
        assert server.admin("POST", f"/api/v1/admin/plans/{PLAN_ID}/{step}").status_code == 200


def session(server: ServerProcess, body: dict[str, Any]) -> tuple[str, str]:
    """(socket URL of this process, token)."""
    response = httpx.post(server.base + "/api/v1/sessions", json=body, timeout=10)
    assert response.status_code == 201, response.text
    found = response.json()
    assert found["socketUrl"] == f"ws://127.0.0.1:{server.socket_port}/ws"
    return found["socketUrl"], found["token"]


def two_servers(tmp_path: Path, redis_url: str, servers: list[ServerProcess]) -> tuple[Any, ...]:
    data = tmp_path / "shared"
    a = start_server(data, redis_url, env=PING_ENV)
    servers.append(a)
    b = start_server(data, redis_url, env=PING_ENV)
    servers.append(b)
    prepared(a)
    sup = {"planId": PLAN_ID, "authCode": "SUPAUTH01", "supervisorId": "SUP202301"}
    other = {"planId": PLAN_ID, "authCode": "SUPAUTH02", "supervisorId": "SUP202302"}
    return a, b, session(b, sup), session(b, other)


def examinee_events(p: Peer) -> list[tuple[str, str, str | None]]:
    return [
        (f["type"], f["socketId"], f.get("reason"))
        for f in p.frames
        if f["type"] in ("examinee_connected", "examinee_disconnected")
    ]


def test_a_drop_on_process_a_shows_on_the_supervisor_connected_to_process_b(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    a, b, (b_url, sup), (_, other) = two_servers(tmp_path, redis_url, servers)
    a_url, cand = session(a, CANDIDATE)
    live = redis.Redis.from_url(redis_url, decode_responses=True)

    async def scenario() -> tuple[Peer, Peer, list[str]]:
        async with peer(b_url, sup) as s1, peer(b_url, other) as s2:
            # 1. connect on A, close: CONNECTED then SOCKET_CLOSED, seen on B
            async with peer(a_url, cand) as first:
                connected = await s1.next_of("examinee_connected", timeout=5)
                assert connected["socketId"] == first.socket_id
                assert live.hgetall(PROGRESS)["connStatusCode"] == "CONNECTED"
            closed = await s1.next_of("examinee_disconnected", timeout=5)
            assert (closed["socketId"], closed["reason"]) == (first.socket_id, "SOCKET_CLOSED")
            assert live.hgetall(PROGRESS) == {
                "connStatusCode": "DISCONNECTED",
                "lastActiveTime": closed["timestamp"],
            }
            # 2. reconnect on A, stop answering pings: PING_TIMEOUT, seen on B in time
            async with peer(a_url, cand, answer_pings=False) as frozen:
                await s1.next_of("examinee_connected", timeout=5, after=1)
                timed_out = await s1.next_of(
                    "examinee_disconnected", timeout=2 * PING + 1.5, after=1
                )
                assert (timed_out["socketId"], timed_out["reason"]) == (
                    frozen.socket_id,
                    "PING_TIMEOUT",
                )
            await asyncio.sleep(3 * PING)
            return s1, s2, [first.socket_id, frozen.socket_id]

    s1, s2, socket_ids = asyncio.run(scenario())
    assert examinee_events(s1) == [
        ("examinee_connected", socket_ids[0], None),
        ("examinee_disconnected", socket_ids[0], "SOCKET_CLOSED"),
        ("examinee_connected", socket_ids[1], None),
        ("examinee_disconnected", socket_ids[1], "PING_TIMEOUT"),
    ]
    assert examinee_events(s2) == []  # GROUP02's supervisor
    for socket_id in socket_ids:
        found = live.hgetall(f"plan:{PLAN_ID}:socket:examinee:{socket_id}")
        assert found["examineeId"] == "CAND202301" and found["status"] == "DISCONNECTED"
    assert_drained(live)
    # Both processes consume the queue as one group.
    consumers = {c["name"] for c in live.xinfo_consumers("status_queue", "state_managers")}
    assert len(consumers) == 2


def test_sockets_of_a_killed_process_do_not_keep_the_examinee_connected(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    """Process A dies with SIGKILL and reports nothing; the examinee moves to B, then drops."""
    a, b, (b_url, sup), _ = two_servers(tmp_path, redis_url, servers)
    a_url, cand = session(a, CANDIDATE)
    b_cand_url, b_cand = session(b, CANDIDATE)
    live = redis.Redis.from_url(redis_url, decode_responses=True)

    async def scenario() -> list[tuple[str, str, str | None]]:
        async with peer(b_url, sup) as s1:
            async with peer(a_url, cand) as on_a:
                await s1.next_of("examinee_connected", timeout=5)
                a.process.send_signal(signal.SIGKILL)
                await asyncio.wait_for(on_a.closed.wait(), 5)
            async with peer(b_cand_url, b_cand):
                await asyncio.sleep(1)  # still CONNECTED: no event for the move
                assert live.hget(PROGRESS, "connStatusCode") == "CONNECTED"
                # A's presence key lapses (3 intervals + timeout) while the examinee is on B.
                await asyncio.sleep(3 * PING + PING + 0.5)
            event = await s1.next_of("examinee_disconnected", timeout=5)
            assert event["reason"] == "SOCKET_CLOSED"
            return examinee_events(s1)

    events = asyncio.run(scenario())
    assert [kind for kind, _, _ in events] == ["examinee_connected", "examinee_disconnected"]
    assert live.hget(PROGRESS, "connStatusCode") == "DISCONNECTED"
    assert live.smembers(f"plan:{PLAN_ID}:examinee:CAND202301:sockets") == set()


async def test_the_sdk_answers_the_servers_pings_and_stays_connected(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    server = await asyncio.to_thread(start_server, tmp_path / "data", redis_url, env=PING_ENV)
    servers.append(server)
    await asyncio.to_thread(prepared, server)
    url, sup = await asyncio.to_thread(
        session, server, {"planId": PLAN_ID, "supervisorId": "SUP202301", "authCode": "SUPAUTH01"}
    )
    async with peer(url, sup) as s1:
        async with ExamClient(client_config(server.base, tmp_path / "device")) as client:
            changes: list[ConnectionChanged] = []
            client.add_listener(
                lambda e: changes.append(e) if isinstance(e, ConnectionChanged) else None
            )
            await client.login(candidate_id="CAND202301", auth_code="AUTH1234")
            connected = await s1.next_of("examinee_connected", timeout=5)
            await asyncio.sleep(8 * PING)  # eight server pings, each answered
            assert client.connection_state is ConnectionState.OPEN
            assert [c.state for c in changes].count(ConnectionState.WAITING) == 0
            assert not s1.of("examinee_disconnected")
        closed = await s1.next_of("examinee_disconnected", timeout=5)
    assert connected["socketId"] == closed["socketId"]
    assert closed["reason"] == "SOCKET_CLOSED"
    assert connected["clientInfo"]["browserInfo"].startswith("Python/")
    assert connected["examineeId"] == "CAND202301"


def test_an_examinee_whose_process_was_killed_shows_lost_without_coming_back(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    """Process A dies by SIGKILL with the examinee's socket; the examinee never reconnects.
    The sweeper on B reports the socket SERVER_LOST once A's presence key has lapsed."""
    a, b, (b_url, sup), _ = two_servers(tmp_path, redis_url, servers)
    a_url, cand = session(a, CANDIDATE)
    live = redis.Redis.from_url(redis_url, decode_responses=True)

    async def scenario() -> tuple[dict[str, Any], float, str]:
        async with peer(b_url, sup) as s1:
            async with peer(a_url, cand) as on_a:
                await s1.next_of("examinee_connected", timeout=5)
                a.process.send_signal(signal.SIGKILL)
                killed = asyncio.get_running_loop().time()
                await asyncio.wait_for(on_a.closed.wait(), 5)
            # presence TTL (3 intervals + timeout), then at most a sweep interval, plus slack
            lost = await s1.next_of("examinee_disconnected", timeout=4 * PING + PING + 3)
            return lost, asyncio.get_running_loop().time() - killed, on_a.socket_id

    lost, after, socket_id = asyncio.run(scenario())
    assert (lost["reason"], lost["socketId"]) == ("SERVER_LOST", socket_id)
    ttl = 3 * PING + PING  # A's presence key, renewed every third of it
    assert after >= ttl * 2 / 3 - 0.1  # not before that key could lapse
    assert live.hget(PROGRESS, "connStatusCode") == "DISCONNECTED"
    assert live.smembers(f"plan:{PLAN_ID}:examinee:CAND202301:sockets") == set()
    assert_drained(live)
