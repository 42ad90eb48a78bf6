"""Events over HTTP (`GET /api/v1/events`), the fallback of a client whose socket cannot get
through: the same events as a resuming socket, and a candidate who polls counts as connected
(transport http) until the polls stop for ping_interval + ping_timeout."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from examsync_server.demo.sample import PLAN_ID
from examsync_server.runtime import Runtime
from socket_peer import peer

from .conftest import eventually, load_plan, login, socket_url

PING = 0.3
CANDIDATE = {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"}
SUPERVISOR_01 = {"planId": PLAN_ID, "supervisorId": "SUP202301", "authCode": "SUPAUTH01"}
PROGRESS = f"plan:{PLAN_ID}:examinee:CAND202301:progress"

pytestmark = pytest.mark.parametrize(
    "settings_overrides", [{"ping_interval": PING, "ping_timeout": PING}]
)


async def poll(client: Client, token: str, after: str | None = None) -> dict[str, Any]:
    query = f"?after={after}" if after else ""
    response = await client.get(
        f"/api/v1/events{query}",
        headers={"Authorization": f"Bearer {token}", "User-Agent": "Mozilla/5.0 Firefox/121.0"},
    )
    body: dict[str, Any] = await response.get_json()
    assert response.status_code == 200, body
    return body


async def test_a_poll_gets_what_a_resuming_socket_would_and_where_to_go_on(
    client: Client, admin: dict[str, str], runtime: Runtime, sync_redis: Any
) -> None:
    await load_plan(client, admin)
    cand = (await login(client, CANDIDATE))["token"]
    sup = (await login(client, SUPERVISOR_01))["token"]
    start = await poll(client, sup)
    [signed_in] = [i for i, _ in sync_redis.xrange("socket_queue")]  # the sign-in's event
    assert start == {"events": [], "position": signed_in}
    async with peer(socket_url(runtime), cand):
        await eventually(lambda: sync_redis.xlen("socket_queue") == 2)
    await eventually(lambda: sync_redis.xlen("socket_queue") == 3)
    got = await poll(client, sup, start["position"])
    ids = [i for i, _ in sync_redis.xrange("socket_queue")][1:]
    assert [(e["type"], e["position"]) for e in got["events"]] == [
        ("examinee_connected", ids[0]),
        ("examinee_disconnected", ids[1]),
    ]
    assert got["position"] == ids[1] and "reload" not in got
    assert await poll(client, sup, got["position"]) == {"events": [], "position": ids[1]}

    # a position that cannot be served: reload; one that is no position: 400
    sync_redis.xadd("socket_queue", {"type": "note", "planId": PLAN_ID, "data": "{}"})
    sync_redis.xtrim("socket_queue", maxlen=1, approximate=False)
    old = await poll(client, sup, ids[0])
    assert old["reload"] == "position_too_old" and old["events"] == []
    response = await client.get(
        "/api/v1/events?after=yesterday", headers={"Authorization": f"Bearer {sup}"}
    )
    assert response.status_code == 400
    assert (await response.get_json())["error"]["code"] == "invalid_position"
    assert (await client.get("/api/v1/events")).status_code == 401

    # after the end, every poll carries exam_end
    for step in ("start", "end"):
        response = await client.post(f"/api/v1/admin/plans/{PLAN_ID}/{step}", headers=admin)
        assert response.status_code == 200
    ended = await poll(client, sup, old["position"])
    assert [e["type"] for e in ended["events"]][-1] == "exam_end"


async def test_a_candidate_who_polls_is_connected_over_http_until_the_polls_stop(
    client: Client, admin: dict[str, str], runtime: Runtime, sync_redis: Any
) -> None:
    await load_plan(client, admin)
    cand = (await login(client, CANDIDATE))["token"]
    sup = (await login(client, SUPERVISOR_01))["token"]
    async with peer(socket_url(runtime), sup) as s:
        position = None
        polling_since = time.monotonic()
        while time.monotonic() - polling_since < 3 * (PING + PING):  # well past the window
            position = (await poll(client, cand, position))["position"]
            stopped = time.monotonic()
            await asyncio.sleep(PING / 2)
        joined = await s.next_of("examinee_connected")
        assert sync_redis.hget(PROGRESS, "connStatusCode") == "CONNECTED"
        assert not s.of("examinee_disconnected")  # polling kept it connected
        assert joined["clientInfo"]["transport"] == "http"
        assert joined["clientInfo"]["browserInfo"] == "Firefox 121.0"
        assert joined["socketId"].startswith(f"http~{PLAN_ID}~CAND202301-")
        gone = await s.next_of("examinee_disconnected", timeout=2 * PING + 2)
        waited = time.monotonic() - stopped
        assert (gone["socketId"], gone["reason"]) == (joined["socketId"], "POLL_TIMEOUT")
        assert 2 * PING - 0.1 <= waited <= 2 * PING + 1.0
        # polling again is a new session: CONNECTED again, a new pseudo-socket
        await poll(client, cand, position)
        back = await s.next_of("examinee_connected", after=1)
        assert back["socketId"] != joined["socketId"]
    entries = [json.loads(f["data"]) for _, f in sync_redis.xrange("socket_queue")]
    assert [e["type"] for e in entries] == [
        "device_active",  # the sign-in
        "examinee_connected",
        "examinee_disconnected",
        "examinee_connected",
    ]


async def test_a_poller_that_also_has_a_socket_stays_connected_when_polls_stop(
    client: Client, admin: dict[str, str], runtime: Runtime, sync_redis: Any
) -> None:
    await load_plan(client, admin)
    cand = (await login(client, CANDIDATE))["token"]
    await poll(client, cand)
    async with peer(socket_url(runtime), cand):
        await eventually(lambda: sync_redis.hget(PROGRESS, "connStatusCode") == "CONNECTED")
        await eventually(lambda: sync_redis.xlen("status_queue") == 0)
        await asyncio.sleep(3 * PING + 0.5)  # the polling session lapses meanwhile
        await eventually(lambda: sync_redis.xlen("status_queue") == 0)
        assert sync_redis.hget(PROGRESS, "connStatusCode") == "CONNECTED"
        members = sync_redis.smembers(f"plan:{PLAN_ID}:examinee:CAND202301:sockets")
        assert len(members) == 1 and not next(iter(members)).startswith("http~")
