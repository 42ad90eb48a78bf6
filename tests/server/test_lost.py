"""Lost examinees (seed 004 §10.5): disconnected for `lost_after_seconds` → LOST, announced
once to the group's supervisors; back on a socket → CONNECTED as ever."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from examsync_server.demo.sample import PLAN_ID
from examsync_server.runtime import Runtime
from socket_peer import peer

from .conftest import eventually, load_plan, login, socket_url

LOST_AFTER = 0.6
CANDIDATE = {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"}
SUPERVISOR_01 = {"planId": PLAN_ID, "supervisorId": "SUP202301", "authCode": "SUPAUTH01"}
SUPERVISOR_02 = {"planId": PLAN_ID, "supervisorId": "SUP202302", "authCode": "SUPAUTH02"}
PROGRESS = f"plan:{PLAN_ID}:examinee:CAND202301:progress"

pytestmark = pytest.mark.parametrize(
    "settings_overrides",
    [{"lost_after_seconds": LOST_AFTER, "ping_interval": 0.5, "ping_timeout": 0.5}],
)


def examinee_events(frames: list[dict[str, Any]]) -> list[str]:
    return [f["type"] for f in frames if f["type"].startswith("examinee_")]


async def test_an_examinee_away_too_long_is_lost_once_then_connected_again(
    client: Client, admin: dict[str, str], runtime: Runtime, sync_redis: Any
) -> None:
    await load_plan(client, admin)
    cand = (await login(client, CANDIDATE))["token"]
    sup1 = (await login(client, SUPERVISOR_01))["token"]
    sup2 = (await login(client, SUPERVISOR_02))["token"]
    url = socket_url(runtime)
    async with peer(url, sup1) as s1, peer(url, sup2) as s2:
        async with peer(url, cand):
            await s1.next_of("examinee_connected")
        gone = await s1.next_of("examinee_disconnected")
        lost = await s1.next_of("examinee_lost", timeout=LOST_AFTER + 2)
        assert lost == {
            "type": "examinee_lost",
            "planId": PLAN_ID,
            "examineeId": "CAND202301",
            "groupId": "GROUP01",
            "status": "LOST",
            "timestamp": lost["timestamp"],
            "disconnectedAt": lost["disconnectedAt"],
            "lostAfter": LOST_AFTER,
            "position": lost["position"],
        }
        assert lost["disconnectedAt"][:19] == gone["timestamp"][:19]
        assert sync_redis.hget(PROGRESS, "connStatusCode") == "LOST"
        snapshot = await client.get(
            "/api/v1/supervisor/snapshot", headers={"Authorization": f"Bearer {sup1}"}
        )
        by_id = {e["examineeId"]: e for e in (await snapshot.get_json())["examinees"]}
        assert by_id["CAND202301"]["connStatusCode"] == "LOST"
        await asyncio.sleep(LOST_AFTER + 0.5)  # announced once
        assert examinee_events(s1.frames).count("examinee_lost") == 1
        # back: CONNECTED as ever, and lost again only after another absence
        async with peer(url, cand):
            await s1.next_of("examinee_connected", after=1)
            assert sync_redis.hget(PROGRESS, "connStatusCode") == "CONNECTED"
            assert sync_redis.zcard("examinees_disconnected") == 0
        await s1.next_of("examinee_lost", timeout=LOST_AFTER + 2, after=1)
    assert examinee_events(s1.frames) == [
        "examinee_connected",
        "examinee_disconnected",
        "examinee_lost",
        "examinee_connected",
        "examinee_disconnected",
        "examinee_lost",
    ]
    assert examinee_events(s2.frames) == []  # another group's supervisor


async def test_a_quick_reconnect_is_not_lost(
    client: Client, admin: dict[str, str], runtime: Runtime, sync_redis: Any
) -> None:
    await load_plan(client, admin)
    cand = (await login(client, CANDIDATE))["token"]
    sup1 = (await login(client, SUPERVISOR_01))["token"]
    url = socket_url(runtime)
    async with peer(url, sup1) as s1:
        for _ in range(3):
            async with peer(url, cand):
                await asyncio.sleep(0.1)
            await asyncio.sleep(LOST_AFTER / 3)
        async with peer(url, cand):
            await eventually(lambda: sync_redis.hget(PROGRESS, "connStatusCode") == "CONNECTED")
            await asyncio.sleep(LOST_AFTER + 0.5)
    assert "examinee_lost" not in examinee_events(s1.frames)
