"""Seed 000 (exam preparation) end to end: DB rows and every Redis key, to the seed's letter."""

from __future__ import annotations

import sqlite3
from typing import Any

from quart.typing import TestClientProtocol as Client

from examsync_server.demo.sample import PLAN_ID, sample_plan

from .conftest import load_plan


async def test_prepare_writes_db_rows_and_seed_redis_keys(
    client: Client, admin: dict[str, str], db: sqlite3.Connection, sync_redis: Any
) -> None:
    plan = await load_plan(client, admin, prepare=False)
    assert sync_redis.keys("exam_plan:*") == []  # nothing in Redis before prepare

    response = await client.post(f"/api/v1/admin/plans/{PLAN_ID}/prepare", headers=admin)
    body = await response.get_json()
    assert response.status_code == 200
    assert body["status"] == "ready" and body["message"] == "prepared"

    row = db.execute("SELECT * FROM exam_plan WHERE plan_id = ?", (PLAN_ID,)).fetchone()
    assert row["status"] == "ready"
    assert row["exam_name"] == "2024년 한국어능력시험"
    assert (row["login_method"], row["conduct_type"]) == ("web", "simultaneous")
    assert row["requires_camera"] == 1 and row["camera_capture_interval"] == 10
    assert db.execute("SELECT COUNT(*) FROM exam_candidate").fetchone()[0] == 10
    hong = db.execute("SELECT * FROM exam_candidate WHERE candidate_id = 'CAND202301'").fetchone()
    assert hong["candidate_name"] == "홍길동" and hong["candidate_auth_code"] == "AUTH1234"
    assert hong["temp_answer_file_path"] == "/temp/PLAN202401/CAND202301"
    assert hong["capture_file_path"] == "/capture/PLAN202401/CAND202301"
    stage_rows = db.execute(
        "SELECT stage_id, stage_name, time_limit_seconds, auto_move_enabled, exam_code,"
        " allocated_exam_time FROM exam_stage ORDER BY stage_order"
    ).fetchall()
    assert [tuple(r) for r in stage_rows] == [
        ("STEP01", "시스템 점검", 300, 1, None, None),
        ("STEP02", "본 시험", 7200, 1, "EXAM202401", 7200),
    ]
    assert (
        db.execute("SELECT action FROM admin_audit ORDER BY audit_id").fetchall()[-1][0]
        == "plan_prepared"
    )

    # seed 000 §3.1.1 / seed 003 §7
    plan_hash = sync_redis.hgetall(f"exam_plan:{PLAN_ID}")
    assert plan_hash["exam_name"] == "2024년 한국어능력시험"
    assert plan_hash["status"] == "ready"
    assert plan_hash["start_datetime"] == row["start_datetime"]
    assert plan_hash["end_datetime"] == row["end_datetime"]
    assert sync_redis.hgetall(f"exam_plan:{PLAN_ID}:stage:STEP01") == {
        "stage_name": "시스템 점검",
        "stage_order": "0",
        "time_limit_seconds": "300",
        "auto_move_enabled": "true",
        "exam_code": "",
        "allocated_exam_time": "",
    }
    assert sync_redis.hgetall(f"exam_plan:{PLAN_ID}:stage:STEP02")["exam_code"] == "EXAM202401"
    # seed 000 §3.1.2: {"status": "ready", "current_stage": null}
    for cand in plan["candidates"]:
        assert sync_redis.hgetall(f"exam_candidate:{cand['candidate_id']}:status") == {
            "status": "ready",
            "current_stage": "",
        }
    assert sync_redis.hgetall("exam_supervisor:SUP202301:info") == {
        "name": "김철수",
        "group_id": "GROUP01",
        "plan_id": PLAN_ID,
    }
    group = sync_redis.hgetall("exam_group:GROUP01:info")
    assert group["group_name"] == "서울 1반" and group["start_datetime"]
    # seed 000 §3.1.3 and the plan's queues with the persisters' consumer group
    assert sync_redis.hgetall(f"exam_queue:{PLAN_ID}") == {"queue_status": "initialized"}
    for kind in ("answers", "media", "logs"):
        groups = sync_redis.xinfo_groups(f"exam_queue:{PLAN_ID}:{kind}")
        assert [g["name"] for g in groups] == ["persisters"]


async def test_prepare_is_idempotent_and_repairs_redis(
    client: Client, admin: dict[str, str], sync_redis: Any
) -> None:
    await load_plan(client, admin)
    sync_redis.delete("exam_candidate:CAND202301:status", "exam_queue:PLAN202401")
    response = await client.post(f"/api/v1/admin/plans/{PLAN_ID}/prepare", headers=admin)
    assert response.status_code == 200
    assert sync_redis.hgetall("exam_candidate:CAND202301:status")["status"] == "ready"
    assert sync_redis.hgetall(f"exam_queue:{PLAN_ID}") == {"queue_status": "initialized"}


async def test_replacing_a_prepared_plan_sends_it_back_to_created(
    client: Client, admin: dict[str, str], db: sqlite3.Connection, sync_redis: Any
) -> None:
    await load_plan(client, admin)
    smaller = sample_plan(candidates=3)
    response = await client.put(f"/api/v1/admin/plans/{PLAN_ID}", json=smaller, headers=admin)
    assert response.status_code == 200
    assert db.execute("SELECT status FROM exam_plan").fetchone()[0] == "created"
    assert db.execute("SELECT COUNT(*) FROM exam_candidate").fetchone()[0] == 3
    # the old version's live keys are gone until the plan is prepared again
    assert sync_redis.exists(f"exam_plan:{PLAN_ID}", "exam_candidate:CAND202305:status") == 0
    response = await client.post(f"/api/v1/admin/plans/{PLAN_ID}/start", headers=admin)
    assert response.status_code == 409
    assert (await response.get_json())["error"]["code"] == "plan_not_prepared"


async def test_status_reports_counts_queues_and_redis(
    client: Client, admin: dict[str, str]
) -> None:
    await load_plan(client, admin)
    response = await client.get(f"/api/v1/admin/plans/{PLAN_ID}", headers=admin)
    body = await response.get_json()
    assert response.status_code == 200
    assert body["status"] == "ready" and body["redis"] == {"status": "ready"}
    assert body["counts"]["candidates"] == 10 and body["counts"]["supervisors"] == 2
    assert body["queues"] == {"answers": 0, "media": 0, "logs": 0}
    assert body["package"]["sha256"] and body["plan"]["requiresCamera"] is True
