"""The supervisor's snapshot: the group's examinees now, with the position from which the
dashboard's socket goes on — so that snapshot + events is the truth, with no gap."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from quart.typing import TestClientProtocol as Client

from examsync_server.demo.sample import PLAN_ID
from examsync_server.runtime import Runtime
from socket_peer import Peer, peer

from .answer_helpers import save_body
from .conftest import eventually, login, socket_url
from .test_answers import save, started

SUPERVISOR_01 = {"planId": PLAN_ID, "supervisorId": "SUP202301", "authCode": "SUPAUTH01"}
SUPERVISOR_02 = {"planId": PLAN_ID, "supervisorId": "SUP202302", "authCode": "SUPAUTH02"}
GROUP01 = ["CAND202301", "CAND202303", "CAND202305", "CAND202307", "CAND202309"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def snapshot(client: Client, token: str) -> dict[str, Any]:
    response = await client.get("/api/v1/supervisor/snapshot", headers=bearer(token))
    body: dict[str, Any] = await response.get_json()
    assert response.status_code == 200, body
    return body


async def candidate_token(client: Client, n: int) -> str:
    """Candidate CAND2023{n:02d} (auth codes follow the sample plan)."""
    body = {"planId": PLAN_ID, "candidateId": f"CAND2023{n:02d}", "authCode": f"AUTH{1233 + n}"}
    return str((await login(client, body))["token"])


async def test_the_snapshot_shows_the_groups_examinees_now(
    client: Client, admin: dict[str, str], runtime: Runtime, sync_redis: Any
) -> None:
    auth = await started(client, admin)  # CAND202301
    assert (
        await save(client, auth, save_body({"Q001": ("2", 1), "Q002": ("1", 1)}))
    ).status_code == 200
    sup1 = (await login(client, SUPERVISOR_01))["token"]
    sup2 = (await login(client, SUPERVISOR_02))["token"]
    token = auth["Authorization"].removeprefix("Bearer ")
    async with peer(socket_url(runtime), token) as c:
        assert c.welcome["features"] == ["save", "sync_state"]
        await c.ws.send(json.dumps({"type": "sync_state", "pending": 3, "oldestPendingAge": 4.5}))
        await eventually(
            lambda: sync_redis.hget(f"plan:{PLAN_ID}:examinee:CAND202301:sync", "pending") == "3"
        )
        await eventually(
            lambda: (
                sync_redis.hget(f"plan:{PLAN_ID}:examinee:CAND202301:progress", "connStatusCode")
                == "CONNECTED"
            )
        )
        body = await snapshot(client, sup1)
    assert body["planId"] == PLAN_ID and body["groupId"] == "GROUP01"
    [(last_id, _)] = sync_redis.xrevrange("socket_queue", count=1)
    assert body["position"] == last_id
    by_id = {e["examineeId"]: e for e in body["examinees"]}
    assert sorted(by_id) == GROUP01
    me = by_id["CAND202301"]
    assert (me["connStatusCode"], me["status"], me["currentStage"]) == (
        "CONNECTED",
        "in_progress",
        "STEP01",
    )
    assert (me["answered"], me["pending"]) == (2, 3)
    assert me["lastSaveTime"] and me["lastActiveTime"] and me["syncReportedAt"]
    assert 4.5 <= me["oldestPendingAge"] < 10  # aged from the report to the snapshot
    other = by_id["CAND202303"]
    assert other["connStatusCode"] is None and other["answered"] == 0
    assert (other["pending"], other["oldestPendingAge"], other["lastSaveTime"]) == (
        None,
        None,
        None,
    )
    # the other group's supervisor sees the other group only
    assert {e["groupId"] for e in (await snapshot(client, sup2))["examinees"]} == {"GROUP02"}


async def test_only_supervisors_take_snapshots_and_bad_reports_are_refused(
    client: Client, admin: dict[str, str], runtime: Runtime, sync_redis: Any
) -> None:
    auth = await started(client, admin)
    response = await client.get("/api/v1/supervisor/snapshot", headers=auth)
    assert (await response.get_json())["error"]["code"] == "supervisors_only"
    response = await client.get("/api/v1/supervisor/snapshot", headers=admin)
    assert (await response.get_json())["error"]["code"] == "session_only"
    response = await client.get("/api/v1/supervisor/snapshot")
    assert response.status_code == 401
    token = auth["Authorization"].removeprefix("Bearer ")
    async with peer(socket_url(runtime), token) as c:
        for bad in (
            {"pending": -1},
            {"pending": "3"},
            {"pending": True},
            {"pending": 1, "oldestPendingAge": -2},
            {"pending": 1, "oldestPendingAge": "old"},
        ):
            await c.ws.send(json.dumps({"type": "sync_state", **bad}))
        await eventually(lambda: len(c.of("error")) == 5)
        assert {e["error"]["code"] for e in c.of("error")} == {"invalid_message"}
    sup = (await login(client, SUPERVISOR_01))["token"]
    async with peer(socket_url(runtime), sup) as s:
        await s.ws.send(json.dumps({"type": "sync_state", "pending": 0}))
        assert (await s.next_of("error"))["error"]["code"] == "candidates_only"
    await asyncio.sleep(1.2)  # a flush of the reports has passed
    assert sync_redis.keys("*:sync") == []


async def test_snapshot_then_events_from_its_position_miss_nothing(
    client: Client, admin: dict[str, str], runtime: Runtime, sync_redis: Any
) -> None:
    """Examinees come and go all the time. Each round, the supervisor takes a snapshot, waits
    (events keep coming), then opens the socket from the snapshot's position. The snapshot
    holds exactly the events up to its position; the socket gets exactly those after it; and
    once the churn stops, snapshot + events is the state the server holds."""
    await started(client, admin)
    tokens = [await candidate_token(client, n) for n in (1, 3, 5, 7, 9)]
    sup = (await login(client, SUPERVISOR_01))["token"]
    url = socket_url(runtime)
    churning, done = asyncio.Event(), asyncio.Event()
    rng = random.Random(4)

    async def churn(token: str, stay: bool) -> None:
        while not churning.is_set():
            async with peer(url, token):
                await asyncio.sleep(rng.uniform(0.0, 0.08))
            await asyncio.sleep(rng.uniform(0.0, 0.08))
        if stay:  # some end connected
            async with peer(url, token):
                await done.wait()

    tasks = [asyncio.create_task(churn(t, i % 2 == 0)) for i, t in enumerate(tokens)]
    try:
        for last_round in (False, False, True):
            await asyncio.sleep(0.3)
            snap = await snapshot(client, sup)
            assert _conn_codes(snap) == _state_up_to(sync_redis, snap["position"])
            await asyncio.sleep(0.2)  # events after the snapshot, before the socket opens
            async with peer(url, sup, last_position=snap["position"]) as p:
                if last_round:
                    churning.set()
                    await eventually(lambda: _quiet(sync_redis, runtime))
                await asyncio.sleep(0.3)
                got = [e["position"] for e in _events(p)]
                assert p.of("resumed") and not p.of("reload_state")
                assert got == _group_entries(sync_redis, after=snap["position"])[: len(got)]
                assert len(got) > 2  # the churn was real
        truth = {
            e: sync_redis.hget(f"plan:{PLAN_ID}:examinee:{e}:progress", "connStatusCode")
            for e in GROUP01
        }
        assert got == _group_entries(sync_redis, after=snap["position"])
        assert _replayed(snap, p) == truth
        assert set(truth.values()) == {"CONNECTED", "DISCONNECTED"}
    finally:
        churning.set()
        done.set()
        await asyncio.gather(*tasks)


def _pos(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq)


CONNECTION_EVENTS = ("examinee_connected", "examinee_disconnected")


def _group_entries(sync_redis: Any, after: str) -> list[str]:
    """Ids of GROUP01's connection events on socket_queue after `after` (sign-ins queue
    `device_active` for the group too)."""
    return [
        i
        for i, f in sync_redis.xrange("socket_queue")
        if f.get("groupId") == "GROUP01"
        and f.get("type") in CONNECTION_EVENTS
        and _pos(i) > _pos(after)
    ]


def _state_up_to(sync_redis: Any, position: str) -> dict[str, str | None]:
    """Every GROUP01 examinee's connection as the events up to `position` leave it."""
    state: dict[str, str | None] = dict.fromkeys(GROUP01)
    for i, f in sync_redis.xrange("socket_queue"):
        if (
            f.get("groupId") == "GROUP01"
            and f.get("type") in CONNECTION_EVENTS
            and _pos(i) <= _pos(position)
        ):
            data = json.loads(f["data"])
            state[data["examineeId"]] = data["status"]
    return state


def _quiet(sync_redis: Any, runtime: Runtime) -> bool:
    """Every status handled and every event delivered to this process's sockets."""
    last = sync_redis.xrevrange("socket_queue", count=1)[0][0]
    pending = sync_redis.xpending("status_queue", "state_managers")["pending"]
    assert runtime.sockets is not None
    delivered = runtime.sockets.registry.delivered.get("socket_queue")
    return bool(sync_redis.xlen("status_queue") == 0 and pending == 0 and delivered == last)


def _conn_codes(snap: dict[str, Any]) -> dict[str, str | None]:
    return {e["examineeId"]: e["connStatusCode"] for e in snap["examinees"]}


def _events(p: Peer) -> list[dict[str, Any]]:
    return [f for f in p.frames if f["type"] in CONNECTION_EVENTS]


def _replayed(snap: dict[str, Any], p: Peer) -> dict[str, str | None]:
    """The dashboard's view: the snapshot, then each event in order (each states the value)."""
    state = _conn_codes(snap)
    for event in _events(p):
        state[event["examineeId"]] = event["status"]
    return state
