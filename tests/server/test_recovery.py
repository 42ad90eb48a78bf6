"""Redis is a cache of SQLite: a lost or failed Redis heals, and no event is lost meanwhile."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import redis
from quart.typing import TestClientProtocol as Client

from examsync_server.app import create_app
from examsync_server.config import Settings
from examsync_server.demo.sample import PLAN_ID
from examsync_server.process.embedded_redis import EmbeddedRedis
from examsync_server.runtime import Runtime

from .conftest import ADMIN_TOKEN, eventually, load_plan


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_changes(repair_interval_seconds=0.2)


async def test_flushed_redis_is_rebuilt_from_sqlite(
    client: Client, admin: dict[str, str], sync_redis: Any
) -> None:
    await load_plan(client, admin)
    await client.post(f"/api/v1/admin/plans/{PLAN_ID}/start", headers=admin)
    before = {
        k: sync_redis.hgetall(k) for k in sync_redis.keys("exam_*") if sync_redis.type(k) == "hash"
    }
    sync_redis.flushall()
    await eventually(lambda: sync_redis.hget(f"exam_plan:{PLAN_ID}", "status") == "in_progress")
    await asyncio.sleep(0.1)
    after = {
        k: sync_redis.hgetall(k) for k in sync_redis.keys("exam_*") if sync_redis.type(k) == "hash"
    }
    assert after == before
    assert sync_redis.xinfo_groups(f"exam_queue:{PLAN_ID}:answers")[0]["name"] == "persisters"


def own_settings(tmp_path: Path, redis: EmbeddedRedis) -> Settings:
    """A server on a Redis of the test's own, which the test may stop."""
    return Settings().with_changes(
        data_dir=tmp_path / "data",
        redis_url=redis.url,
        admin_token=ADMIN_TOKEN,
        secret_key="k",
        socket_port=0,
        stage_tick_seconds=0.05,
        repair_interval_seconds=0.2,
    )


def stopped_in_time(caplog: pytest.LogCaptureFixture) -> bool:
    """Every part of the runtime stopped within its bound (the runtime warns of one that did
    not): after an outage, no Redis connection is left stuck."""
    return not [r for r in caplog.records if "did not stop within" in r.getMessage()]


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    server = EmbeddedRedis.start_sync(tmp_path / "own-redis", appendonly=False)
    yield server
    server.stop()


async def test_end_during_a_redis_outage_is_committed_and_broadcast_later(
    tmp_path: Path, private_redis: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    settings = own_settings(tmp_path, private_redis)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    quart_app = create_app(settings)
    async with quart_app.test_app() as test_app:
        client = test_app.test_client()
        await load_plan(client, admin)
        await client.post(f"/api/v1/admin/plans/{PLAN_ID}/start", headers=admin)
        await asyncio.to_thread(private_redis.stop)

        response = await client.post(f"/api/v1/admin/plans/{PLAN_ID}/end", headers=admin)
        body = await response.get_json()
        assert response.status_code == 503
        assert body["error"]["code"] == "redis_unavailable"
        assert body["error"]["details"] == {"committed": True}
        assert response.headers["Retry-After"]
        with closing(sqlite3.connect(settings.storage.sqlite_path)) as db:
            assert db.execute("SELECT status FROM exam_plan").fetchone()[0] == "completed"
            assert db.execute("SELECT COUNT(*) FROM event_outbox").fetchone()[0] == 1

        # Redis comes back empty (no AOF here): the timer rebuilds the keys and publishes the
        # exam_end the outbox kept.
        restarted = EmbeddedRedis.start_sync(tmp_path / "own-redis", appendonly=False)
        try:
            live = redis.Redis.from_url(restarted.url, decode_responses=True)
            await eventually(lambda: live.xlen("queue:exam_end") == 1)
            assert live.xrange("queue:exam_end")[0][1]["examId"] == PLAN_ID
            await eventually(lambda: live.hget(f"exam_plan:{PLAN_ID}", "status") == "completed")
            assert live.hget("exam_candidate:CAND202301:status", "status") == "completed"
            with closing(sqlite3.connect(settings.storage.sqlite_path)) as db:
                assert db.execute("SELECT COUNT(*) FROM event_outbox").fetchone()[0] == 0
            live.close()
        finally:
            restarted.stop()
    assert stopped_in_time(caplog)


async def test_saves_during_a_redis_outage_get_503_and_store_nothing(
    tmp_path: Path, private_redis: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    from .answer_helpers import encoded, save_body
    from .conftest import login

    settings = own_settings(tmp_path, private_redis)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with create_app(settings).test_app() as test_app:
        client = test_app.test_client()
        await load_plan(client, admin)
        await client.post(f"/api/v1/admin/plans/{PLAN_ID}/start", headers=admin)
        session = await login(
            client, {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"}
        )
        auth = {"Authorization": f"Bearer {session['token']}"}
        body = encoded(save_body({"Q001": ("2", 1)}))
        await asyncio.to_thread(private_redis.stop)

        response = await client.post("/api/v1/answers", data=body, headers=auth)
        assert response.status_code == 503
        assert (await response.get_json())["error"]["code"] == "redis_unavailable"
        assert response.headers["Retry-After"] == "1"
        with closing(sqlite3.connect(settings.storage.sqlite_path)) as db:
            assert db.execute("SELECT COUNT(*) FROM answer").fetchone()[0] == 0

        # Redis is back (empty): the repair loop rebuilds the plan's keys and queues from
        # SQLite, and the SDK's retry of the same save is taken.
        restarted = EmbeddedRedis.start_sync(tmp_path / "own-redis", appendonly=False)
        try:

            async def retried() -> bool:
                again = await client.post("/api/v1/answers", data=body, headers=auth)
                return again.status_code == 200

            for _ in range(100):
                if await retried():
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the save was not taken after Redis came back")
            with closing(sqlite3.connect(settings.storage.sqlite_path)) as db:
                assert db.execute("SELECT version FROM answer").fetchone()[0] == 1
        finally:
            restarted.stop()
    assert stopped_in_time(caplog)


async def test_a_resync_racing_a_start_leaves_the_started_plan(
    client: Client, admin: dict[str, str], runtime: Runtime, sync_redis: Any
) -> None:
    """A repair copying the `ready` snapshot while the admin's start commits and writes Redis
    must not leave `ready` in Redis (saves were refused `plan_not_started` until the next
    repair: bench/saves.py saw thousands)."""
    await load_plan(client, admin)
    lifecycle = runtime.lifecycle
    real_sync = lifecycle.state.sync_plan
    copies: list[str] = []

    async def start_meanwhile(snap: Any) -> None:
        copies.append(snap.plan["status"])
        if len(copies) == 1:  # the start lands between the snapshot and its copy
            assert (await lifecycle.start(PLAN_ID))["status"] == "in_progress"
        await real_sync(snap)

    lifecycle.state.sync_plan = start_meanwhile  # type: ignore[method-assign]
    try:
        await lifecycle.resync(PLAN_ID)
    finally:
        lifecycle.state.sync_plan = real_sync  # type: ignore[method-assign]
    assert copies == ["ready", "in_progress"]
    assert sync_redis.hget(f"exam_plan:{PLAN_ID}", "status") == "in_progress"
