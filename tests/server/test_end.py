"""Seed 001 (exam completion) end to end: DB, Redis, the queue message, and the broadcast."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from examsync.frames import auth_frame
from examsync_server.demo.sample import PLAN_ID
from examsync_server.runtime import Runtime
from examsync_server.store import keys

from .conftest import load_plan, login, other_plan


@asynccontextmanager
async def socket(runtime: Runtime, token: str) -> AsyncIterator[ClientConnection]:
    assert runtime.sockets is not None
    async with connect(f"ws://127.0.0.1:{runtime.sockets.port}/ws") as ws:
        await ws.send(auth_frame(token))
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 2))
        assert welcome["type"] == "welcome" and welcome["socketId"]
        yield ws


async def next_of(ws: ClientConnection, kind: str, timeout: float = 1.0) -> dict[str, Any]:
    """The next message of one type, skipping others (stage changes, say)."""
    deadline = time.monotonic() + timeout
    while True:
        message: dict[str, Any] = json.loads(
            await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
        )
        if message["type"] == kind:
            return message


async def test_end_reaches_every_socket_of_the_plan_within_a_second(
    client: Client,
    admin: dict[str, str],
    runtime: Runtime,
    db: sqlite3.Connection,
    sync_redis: Any,
) -> None:
    await load_plan(client, admin)
    await load_plan(client, admin, plan=other_plan(), plan_id="PLAN202402")
    for plan_id in (PLAN_ID, "PLAN202402"):
        response = await client.post(f"/api/v1/admin/plans/{plan_id}/start", headers=admin)
        assert response.status_code == 200

    cand = await login(
        client, {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"}
    )
    sup = await login(
        client, {"planId": PLAN_ID, "supervisorId": "SUP202302", "authCode": "SUPAUTH02"}
    )
    stranger = await login(
        client, {"planId": "PLAN202402", "candidateId": "OTHER0", "authCode": "AUTH1234"}
    )
    async with (
        socket(runtime, cand["token"]) as c_ws,
        socket(runtime, sup["token"]) as s_ws,
        socket(runtime, stranger["token"]) as x_ws,
    ):
        sent = time.monotonic()
        response = await client.post(f"/api/v1/admin/plans/{PLAN_ID}/end", headers=admin)
        assert response.status_code == 200
        for ws in (c_ws, s_ws):
            message = await next_of(ws, "exam_end", timeout=1.0)
            # seed 001 §3.3
            assert message["message"] == "시험이 종료되었습니다."
            assert message["timestamp"] and message["planId"] == PLAN_ID
        assert time.monotonic() - sent < 1.0
        with pytest.raises(TimeoutError):
            await next_of(x_ws, "exam_end", timeout=0.3)

    ended = db.execute(
        "SELECT status, ended_at FROM exam_plan WHERE plan_id = ?", (PLAN_ID,)
    ).fetchone()
    assert ended["status"] == "completed" and ended["ended_at"]
    assert {
        r[0] for r in db.execute("SELECT status FROM exam_candidate WHERE plan_id = ?", (PLAN_ID,))
    } == {"completed"}
    # seed 001 §3.1
    plan_hash = sync_redis.hgetall(f"exam_plan:{PLAN_ID}")
    assert plan_hash["status"] == "completed" and plan_hash["end_datetime"] == ended["ended_at"]
    status = sync_redis.hgetall("exam_candidate:CAND202301:status")
    assert status["status"] == "completed" and status["last_active_time"] == ended["ended_at"]
    assert sync_redis.hget("exam_candidate:OTHER0:status", "status") == "in_progress"
    # seed 001 §3.2, on the queue:exam_end stream
    [(_, fields)] = sync_redis.xrange("queue:exam_end")
    assert fields == {
        "type": "exam_end",
        "examId": PLAN_ID,
        "status": "completed",
        "timestamp": ended["ended_at"],
    }
    assert db.execute("SELECT COUNT(*) FROM event_outbox").fetchone()[0] == 0


async def test_end_is_idempotent_and_start_after_end_is_refused(
    client: Client, admin: dict[str, str], sync_redis: Any
) -> None:
    await load_plan(client, admin)
    assert (
        await client.post(f"/api/v1/admin/plans/{PLAN_ID}/start", headers=admin)
    ).status_code == 200
    first = await (
        await client.post(f"/api/v1/admin/plans/{PLAN_ID}/end", headers=admin)
    ).get_json()
    again = await client.post(f"/api/v1/admin/plans/{PLAN_ID}/end", headers=admin)
    assert again.status_code == 200
    assert (await again.get_json())["alreadyCompleted"] is True
    assert (await again.get_json())["endedAt"] == first["endedAt"]
    assert sync_redis.xlen("queue:exam_end") == 1  # no second broadcast
    for action in ("start", "prepare"):
        response = await client.post(f"/api/v1/admin/plans/{PLAN_ID}/{action}", headers=admin)
        assert response.status_code == 409
        assert (await response.get_json())["error"]["code"] == "plan_completed"


async def test_socket_refuses_bad_tokens_and_answers_bad_frames(
    client: Client, admin: dict[str, str], runtime: Runtime
) -> None:
    await load_plan(client, admin)
    assert runtime.sockets is not None
    base = f"ws://127.0.0.1:{runtime.sockets.port}"
    # Refused on the handshake: another path, and the deprecated token in the URL (the
    # first-frame refusals: test_socket_auth.py).
    for url, status in (
        (f"{base}/ws?token=forged", 401),
        (f"{base}/ws?token=test-admin-token-0123456789", 403),
        (f"{base}/elsewhere", 404),
    ):
        with pytest.raises(InvalidStatus) as caught:
            async with connect(url):
                pass
        assert caught.value.response.status_code == status
    cand = await login(
        client, {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"}
    )
    async with socket(runtime, cand["token"]) as ws:
        await ws.send("not json")
        assert (await next_of(ws, "error"))["error"]["code"] == "invalid_json"
        await ws.send(json.dumps({"type": "bogus"}))
        assert (await next_of(ws, "error"))["error"]["code"] == "unknown_type"
        await ws.send(json.dumps([1, 2]))
        assert (await next_of(ws, "error"))["error"]["code"] == "invalid_message"
        await ws.send(json.dumps({"type": "ping", "ts": 42}))
        assert (await next_of(ws, "pong"))["ts"] == 42
    async with socket(runtime, cand["token"]) as ws:
        # Over the frame limit (the largest save and its envelope): closed with 1009.
        await ws.send("x" * (runtime.settings.limits.max_save_bytes + 8192))
        with pytest.raises(Exception) as closed:
            await asyncio.wait_for(ws.recv(), 2)
        assert "1009" in str(closed.value)


async def test_a_socket_connecting_after_the_end_hears_of_it_at_once(
    client: Client, admin: dict[str, str], runtime: Runtime
) -> None:
    """A candidate offline when exam_end was broadcast learns of it when it reconnects."""
    await load_plan(client, admin)
    await client.post(f"/api/v1/admin/plans/{PLAN_ID}/start", headers=admin)
    cand = await login(
        client, {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"}
    )
    ended = await (
        await client.post(f"/api/v1/admin/plans/{PLAN_ID}/end", headers=admin)
    ).get_json()
    async with socket(runtime, cand["token"]) as ws:
        message = await next_of(ws, "exam_end", timeout=1.0)
    assert message["message"] == "시험이 종료되었습니다."
    assert (message["planId"], message["timestamp"]) == (PLAN_ID, ended["endedAt"])


async def test_a_socket_after_an_end_this_process_broadcast_hears_of_it_without_redis(
    client: Client, admin: dict[str, str], runtime: Runtime
) -> None:
    """Redis is asked once per plan: after it said "running", the process's own fan-out notes
    the end, and later sockets learn of it from that note (here with the plan's Redis hash
    gone, so only the note can tell)."""
    await load_plan(client, admin)
    await client.post(f"/api/v1/admin/plans/{PLAN_ID}/start", headers=admin)
    body = {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"}
    first, second = await login(client, body), await login(client, body)
    async with socket(runtime, first["token"]) as ws:
        with pytest.raises(TimeoutError):
            await next_of(ws, "exam_end", timeout=0.3)  # asked Redis: running
        await client.post(f"/api/v1/admin/plans/{PLAN_ID}/end", headers=admin)
        heard = await next_of(ws, "exam_end", timeout=1.0)
    assert runtime.redis is not None
    await runtime.redis.delete(keys.plan(PLAN_ID))
    async with socket(runtime, second["token"]) as ws:
        later = await next_of(ws, "exam_end", timeout=1.0)
    assert later["timestamp"] == heard["timestamp"]


async def test_a_socket_of_a_running_exam_gets_no_exam_end(
    client: Client, admin: dict[str, str], runtime: Runtime
) -> None:
    await load_plan(client, admin)
    await client.post(f"/api/v1/admin/plans/{PLAN_ID}/start", headers=admin)
    cand = await login(
        client, {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"}
    )
    async with socket(runtime, cand["token"]) as ws:
        with pytest.raises(TimeoutError):
            await next_of(ws, "exam_end", timeout=0.3)


async def test_the_socket_server_declines_permessage_deflate(
    client: Client, admin: dict[str, str], runtime: Runtime
) -> None:
    """Browsers offer it; accepted, it would cost ~37 KB per socket and one compression per
    socket for every broadcast (bench/sockets.py), for frames of a few hundred bytes."""
    await load_plan(client, admin)
    cand = await login(
        client, {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"}
    )
    async with socket(runtime, cand["token"]) as ws:  # the client offers deflate by default
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
