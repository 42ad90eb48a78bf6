"""Stage clocks: auto-move on the server's clock, per plan (동시시험) or per examinee (개별시험)."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from examsync_server.demo.sample import PLAN_ID, sample_plan
from examsync_server.runtime import Runtime

from .conftest import eventually, load_plan, login
from .test_end import next_of, socket


def quick_plan(conduct: str, auto_first: bool = True) -> dict[str, Any]:
    plan = sample_plan(candidates=4)
    plan["exam_plan"]["conduct_type"] = conduct
    plan["stages"][0].update(time_limit_seconds=1, auto_move_enabled=auto_first)
    plan["stages"][1].update(time_limit_seconds=1, allocated_exam_time=1)
    return plan


async def test_simultaneous_plan_moves_as_a_whole_on_the_server_clock(
    client: Client,
    admin: dict[str, str],
    runtime: Runtime,
    db: sqlite3.Connection,
    sync_redis: Any,
) -> None:
    await load_plan(client, admin, plan=quick_plan("동시시험"))
    cand = await login(
        client, {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"}
    )
    sup = await login(
        client, {"planId": PLAN_ID, "supervisorId": "SUP202301", "authCode": "SUPAUTH01"}
    )
    async with socket(runtime, cand["token"]) as ws, socket(runtime, sup["token"]) as sup_ws:
        started = await (
            await client.post(f"/api/v1/admin/plans/{PLAN_ID}/start", headers=admin)
        ).get_json()
        assert started["currentStage"] == "STEP01"
        first = await next_of(ws, "stage_changed")
        assert first["stageId"] == "STEP01" and first["deadline"]
        assert sync_redis.hget("exam_candidate:CAND202302:status", "current_stage") == "STEP01"
        second = await next_of(ws, "stage_changed", timeout=3)
        assert second["stageId"] == "STEP02" and second["examCode"] == "EXAM202401"
        # the next stage starts at the previous deadline, not at whichever tick noticed it
        assert second["startedAt"] == first["deadline"]
        assert (await next_of(sup_ws, "stage_changed", timeout=3))["stageId"] in (
            "STEP01",
            "STEP02",
        )
        done = await next_of(ws, "stage_changed", timeout=3)
        assert done["stageId"] is None
    statuses = {r[0] for r in db.execute("SELECT status FROM exam_candidate")}
    assert statuses == {"completed"}
    assert sync_redis.hgetall("exam_candidate:CAND202304:status")["status"] == "completed"
    assert db.execute("SELECT status FROM exam_plan").fetchone()[0] == "in_progress"


async def test_stage_without_auto_move_waits_for_the_admin(
    client: Client, admin: dict[str, str], db: sqlite3.Connection, sync_redis: Any
) -> None:
    await load_plan(client, admin, plan=quick_plan("simultaneous", auto_first=False))
    await client.post(f"/api/v1/admin/plans/{PLAN_ID}/start", headers=admin)
    await asyncio.sleep(1.5)
    assert db.execute("SELECT current_stage_id FROM exam_plan").fetchone()[0] == "STEP01"
    url = f"/api/v1/admin/plans/{PLAN_ID}/advance"
    moved = await client.post(url, json={"fromStage": "STEP01"}, headers=admin)
    assert moved.status_code == 200
    assert (await moved.get_json())["currentStage"] == "STEP02"
    again = await client.post(url, json={"fromStage": "STEP01"}, headers=admin)  # a double click
    assert again.status_code == 409
    assert (await again.get_json())["error"]["code"] == "stage_changed"
    assert sync_redis.hget("exam_plan:PLAN202401", "current_stage") == "STEP02"
    assert sync_redis.hget("exam_candidate:CAND202301:status", "current_stage") == "STEP02"


async def test_individual_exam_runs_one_clock_per_examinee(
    client: Client,
    admin: dict[str, str],
    runtime: Runtime,
    db: sqlite3.Connection,
    sync_redis: Any,
) -> None:
    await load_plan(client, admin, plan=quick_plan("개별시험"))
    await client.post(f"/api/v1/admin/plans/{PLAN_ID}/start", headers=admin)
    # nobody's clock runs until they start
    assert sync_redis.hgetall("exam_candidate:CAND202301:status") == {
        "status": "ready",
        "current_stage": "",
    }
    cand = await login(
        client, {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"}
    )
    auth = {"Authorization": f"Bearer {cand['token']}"}
    own = await login(
        client, {"planId": PLAN_ID, "supervisorId": "SUP202301", "authCode": "SUPAUTH01"}
    )
    other = await login(
        client, {"planId": PLAN_ID, "supervisorId": "SUP202302", "authCode": "SUPAUTH02"}
    )
    async with (
        socket(runtime, cand["token"]) as ws,
        socket(runtime, own["token"]) as own_ws,
        socket(runtime, other["token"]) as other_ws,
    ):
        view = await (await client.post("/api/v1/me/start", headers=auth)).get_json()
        assert view["status"] == "in_progress" and view["currentStage"] == "STEP01"
        assert (await next_of(ws, "stage_changed"))["stageId"] == "STEP01"
        # the examinee's own group's supervisor sees it; the other group's does not
        seen = await next_of(own_ws, "stage_changed")
        assert (seen["candidateId"], seen["stageId"]) == ("CAND202301", "STEP01")
        with pytest.raises(TimeoutError):
            await next_of(other_ws, "stage_changed", timeout=0.3)
        assert (await next_of(ws, "stage_changed", timeout=3))["stageId"] == "STEP02"
        assert (await next_of(ws, "stage_changed", timeout=3))["stageId"] is None
    await eventually(
        lambda: sync_redis.hget("exam_candidate:CAND202301:status", "status") == "completed"
    )
    others = db.execute(
        "SELECT status, current_stage_id FROM exam_candidate WHERE candidate_id != 'CAND202301'"
    ).fetchall()
    assert {tuple(r) for r in others} == {("ready", None)}


async def test_examinee_can_finish_a_stage_early_in_an_individual_exam(
    client: Client, admin: dict[str, str], sync_redis: Any
) -> None:
    plan = quick_plan("individual")
    plan["stages"][0]["time_limit_seconds"] = 600
    await load_plan(client, admin, plan=plan)
    await client.post(f"/api/v1/admin/plans/{PLAN_ID}/start", headers=admin)
    cand = await login(
        client, {"planId": PLAN_ID, "candidateId": "CAND202302", "authCode": "AUTH1235"}
    )
    auth = {"Authorization": f"Bearer {cand['token']}"}
    await client.post("/api/v1/me/start", headers=auth)
    view = await (await client.post("/api/v1/me/advance", headers=auth)).get_json()
    assert view["currentStage"] == "STEP02"
    assert sync_redis.hget("exam_candidate:CAND202302:status", "current_stage") == "STEP02"
