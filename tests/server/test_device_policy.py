"""Devices know about each other, through the real server (HTTP, sockets, Redis, SQLite): the
plan's `device_policy`, the device a sign-in makes active, the `device_active` event, the
`409 device_replaced` refusal of a replaced device's later edits, the supervisor's view of the
active device, and the record surviving a Redis loss (docs/protocol.md, "Several devices")."""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
import time
from typing import Any

import pytest
from itsdangerous import URLSafeTimedSerializer
from quart.typing import TestClientProtocol as Client

from examsync.frames import DeviceActive, parse_frame
from examsync.messages import AnswerEntry, SavePayload
from examsync.protocol import format_timestamp, parse_timestamp
from examsync_server.config import Settings
from examsync_server.demo.sample import PLAN_ID
from examsync_server.runtime import Runtime
from socket_peer import peer

from .answer_helpers import at, encoded, save_body
from .conftest import (
    SECRET_KEY,
    error_of,
    eventually,
    load_plan,
    login,
    plan_with,
    problem_fields,
    socket_url,
)
from .test_answers import save
from .test_save_errors import nothing_stored
from .test_socket_saves import answer_to, save_frame

CANDIDATE = {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"}
SUPERVISOR_01 = {"planId": PLAN_ID, "supervisorId": "SUP202301", "authCode": "SUPAUTH01"}
DEVICES = f"plan_devices:{PLAN_ID}"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_changes(repair_interval_seconds=0.2)


async def started(client: Client, admin: dict[str, str], policy: str | None = None) -> None:
    changes = [] if policy is None else [("exam_plan.device_policy", policy)]
    await load_plan(client, admin, plan=plan_with(*changes))
    response = await client.post(f"/api/v1/admin/plans/{PLAN_ID}/start", headers=admin)
    assert response.status_code == 200


async def sign_in(client: Client, **extra: Any) -> dict[str, Any]:
    return await login(client, {**CANDIDATE, **extra})


def bearer(session: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['token']}"}


def now_stamp() -> str:
    """An edit made now (after any takeover so far)."""
    return format_timestamp(time.time())


def events(sync_redis: Any, kind: str = "device_active") -> list[dict[str, str]]:
    return [f for _, f in sync_redis.xrange("socket_queue") if f["type"] == kind]


def record(db: sqlite3.Connection) -> tuple[str | None, str | None]:
    row = db.execute(
        "SELECT active_device, active_since FROM exam_candidate WHERE candidate_id = 'CAND202301'"
    ).fetchone()
    return row[0], row[1]


# -- the plan setting -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (None, "single"),
        ("single", "single"),
        ("merge", "merge"),
        ("단일", "single"),
        ("단일 기기", "single"),
        ("병합", "merge"),
        ("여러 기기", "merge"),
    ],
)
async def test_the_plan_import_takes_each_policy_and_its_aliases(
    client: Client,
    admin: dict[str, str],
    db: sqlite3.Connection,
    sync_redis: Any,
    given: str | None,
    stored: str,
) -> None:
    await load_plan(
        client, admin, plan=plan_with(*([("exam_plan.device_policy", given)] if given else []))
    )
    row = db.execute("SELECT device_policy FROM exam_plan WHERE plan_id = ?", (PLAN_ID,))
    assert row.fetchone()[0] == stored
    assert sync_redis.hget(f"exam_plan:{PLAN_ID}", "device_policy") == stored
    assert (await sign_in(client))["plan"]["devicePolicy"] == stored
    report = await client.get(f"/api/v1/admin/plans/{PLAN_ID}", headers=admin)
    assert (await report.get_json())["plan"]["devicePolicy"] == stored


@pytest.mark.parametrize("bad", ["several", "", 1, None])
async def test_an_unknown_policy_is_refused(
    client: Client, admin: dict[str, str], bad: Any
) -> None:
    plan = plan_with(("exam_plan.device_policy", bad))
    response = await client.put(f"/api/v1/admin/plans/{PLAN_ID}", json=plan, headers=admin)
    details = await error_of(response, 422, "invalid_request")
    assert problem_fields(details) == ["exam_plan.device_policy"]


# -- sign-in ------------------------------------------------------------------------------------


async def test_a_sign_in_names_its_device_or_gets_one_and_the_token_carries_it(
    client: Client, admin: dict[str, str], runtime: Runtime, db: sqlite3.Connection
) -> None:
    await started(client, admin)
    made = await sign_in(client)
    assert re.fullmatch(r"srv-[0-9a-f]{16}", made["deviceId"])
    assert made["devicePolicy"] == "single" and made["replacedDevice"] is None
    assert made["activeDevice"]["deviceId"] == made["deviceId"]
    assert runtime.tokens.verify(made["token"]).device_id == made["deviceId"]
    named = await sign_in(client, deviceId="laptop-1")
    assert named["deviceId"] == "laptop-1"
    assert runtime.tokens.verify(named["token"]).device_id == "laptop-1"
    assert named["replacedDevice"] == made["deviceId"]
    since = named["activeDevice"]["since"]
    assert named["activeDevice"] == {"deviceId": "laptop-1", "since": since}
    assert abs(parse_timestamp(since) - time.time()) < 5
    assert record(db) == ("laptop-1", since)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        pytest.param({"deviceId": "has space"}, "deviceId", id="bad-id"),
        pytest.param({"deviceId": ""}, "deviceId", id="empty-id"),
        pytest.param({"deviceId": "x" * 65}, "deviceId", id="long-id"),
        pytest.param({"deviceId": 7}, "deviceId", id="number-id"),
        pytest.param({"activate": "no"}, "activate", id="activate-not-bool"),
    ],
)
async def test_a_bad_device_field_is_refused(
    client: Client, admin: dict[str, str], db: sqlite3.Connection, extra: Any, field: str
) -> None:
    await started(client, admin)
    response = await client.post("/api/v1/sessions", json={**CANDIDATE, **extra})
    assert problem_fields(await error_of(response, 422, "invalid_request")) == [field]
    assert record(db) == (None, None)


@pytest.mark.parametrize("extra", [{"deviceId": "d1"}, {"activate": False}])
async def test_a_supervisor_sends_no_device_fields(
    client: Client, admin: dict[str, str], extra: dict[str, Any]
) -> None:
    await started(client, admin)
    response = await client.post("/api/v1/sessions", json={**SUPERVISOR_01, **extra})
    assert problem_fields(await error_of(response, 422, "invalid_request")) == list(extra)


async def test_the_same_device_again_or_a_renewal_changes_nothing(
    client: Client, admin: dict[str, str], db: sqlite3.Connection, sync_redis: Any
) -> None:
    await started(client, admin)
    first = await sign_in(client, deviceId="A")
    assert first["replacedDevice"] is None  # the first sign-in replaces nobody
    assert len(events(sync_redis)) == 1
    before = record(db), sync_redis.hgetall(DEVICES)
    again = await sign_in(client, deviceId="A")  # a page reload
    assert again["activeDevice"] == first["activeDevice"] and again["replacedDevice"] is None
    renewal = await sign_in(client, deviceId="B", activate=False)
    assert renewal["deviceId"] == "B"
    assert renewal["activeDevice"] == first["activeDevice"]  # B starts replaced
    assert renewal["replacedDevice"] is None
    assert (record(db), sync_redis.hgetall(DEVICES)) == before
    assert len(events(sync_redis)) == 1


async def test_each_takeover_is_strictly_later_than_the_last(
    client: Client, admin: dict[str, str], db: sqlite3.Connection
) -> None:
    """Devices order the records they hear of by `since`: quick takeovers (several within one
    millisecond, or after the clock stepped back) still get increasing ones."""
    await started(client, admin)
    since = []
    for device in ("A", "B", "A", "B", "A", "B"):
        since.append((await sign_in(client, deviceId=device))["activeDevice"]["since"])
    assert since == sorted(set(since)), since
    future = "2999-01-01T00:00:00.000Z"  # as if the server's clock had stepped back since
    db.execute(
        "UPDATE exam_candidate SET active_since = ? WHERE candidate_id = 'CAND202301'", (future,)
    )
    db.commit()
    after = (await sign_in(client, deviceId="A"))["activeDevice"]["since"]
    assert after == "2999-01-01T00:00:00.001Z"


# -- the event ----------------------------------------------------------------------------------


async def test_a_takeover_is_told_to_the_old_device_and_the_supervisor_and_replayed(
    client: Client, admin: dict[str, str], runtime: Runtime, sync_redis: Any
) -> None:
    await started(client, admin)
    old = await sign_in(client, deviceId="A")
    sup = (await login(client, SUPERVISOR_01))["token"]
    url = socket_url(runtime)
    async with peer(url, old["token"]) as a, peer(url, sup) as s:
        start = a.welcome["position"]
        new = await sign_in(client, deviceId="B")
        got = [await a.next_of("device_active"), await s.next_of("device_active")]
    [entry] = [i for i, f in sync_redis.xrange("socket_queue") if f["type"] == "device_active"][1:]
    for frame in got:
        parsed = parse_frame(json.dumps(frame))
        assert parsed == DeviceActive(
            PLAN_ID, "CAND202301", "B", new["activeDevice"]["since"], "single", entry
        )
        assert frame["groupId"] == "GROUP01"
    # a socket that was away resumes from before the event and gets it
    async with peer(url, old["token"], last_position=start) as back:
        await back.next_of("resumed")
        assert [f["position"] for f in back.of("device_active")] == [entry]
    # so does a poll
    response = await client.get(f"/api/v1/events?after={start}", headers=bearer(old))
    polled = (await response.get_json())["events"]
    assert [(e["type"], e["deviceId"], e["position"]) for e in polled] == [
        ("device_active", "B", entry)
    ]


# -- saves under `single` --------------------------------------------------------------------------


async def test_single_refuses_the_replaced_devices_later_edits_and_nothing_is_stored(
    client: Client,
    admin: dict[str, str],
    runtime: Runtime,
    db: sqlite3.Connection,
    sync_redis: Any,
) -> None:
    await started(client, admin)
    a = await sign_in(client, deviceId="A")
    b = await sign_in(client, deviceId="B")
    assert b["replacedDevice"] == "A"
    since = b["activeDevice"]["since"]
    later = save_body({"Q001": ("from A", 1), "Q002": ("3", 1)}, updated=now_stamp(), device="A")
    details = await error_of(await save(client, bearer(a), later), 409, "device_replaced")
    assert details == {"activeDevice": "B", "since": since, "replacedSince": since}
    async with peer(socket_url(runtime), a["token"]) as p:
        await p.ws.send(save_frame("s1", encoded(later)))
        frame = await answer_to(p, "s1")
    assert (frame["status"], frame["error"]["code"]) == (409, "device_replaced")
    assert frame["error"]["details"] == {
        "activeDevice": "B",
        "since": since,
        "replacedSince": since,
    }
    assert nothing_stored(db, sync_redis)
    # one edit made after the takeover refuses the whole save
    old = SavePayload.from_wire(save_body({"Q001": ("old", 1)}, updated=at(1), device="A"))
    answers = {**old.answers, "Q002": AnswerEntry("new", 1, now_stamp())}
    mixed = dataclasses.replace(old, answers=answers).to_wire()
    await error_of(await save(client, bearer(a), mixed), 409, "device_replaced")
    assert nothing_stored(db, sync_redis)


async def test_single_takes_the_replaced_devices_earlier_edits_by_the_latest_edit_rule(
    client: Client, admin: dict[str, str], runtime: Runtime, db: sqlite3.Connection
) -> None:
    await started(client, admin)
    a = await sign_in(client, deviceId="A")
    b = await sign_in(client, deviceId="B")
    response = await save(client, bearer(b), save_body({"Q001": ("B", 1)}, updated=at(20)))
    assert response.status_code == 200  # the active device saves
    # A's edits made offline before the takeover still come in: Q001's loses to B's later
    # edit, Q002 is taken; over HTTP and over the socket alike.
    earlier = save_body({"Q001": ("A", 1), "Q002": ("A", 1)}, updated=at(10), device="A")
    response = await save(client, bearer(a), earlier)
    assert response.status_code == 200, await response.get_json()
    results = (await response.get_json())["results"]
    assert (results["Q001"]["status"], results["Q002"]["status"]) == ("superseded", "accepted")
    async with peer(socket_url(runtime), a["token"]) as p:
        body = save_body({"Q003": ("A", 1)}, updated=at(11), device="A")
        await p.ws.send(save_frame("s1", encoded(body)))
        assert (await answer_to(p, "s1"))["type"] == "save_ack"
    kept = db.execute("SELECT quiz_code, value FROM answer ORDER BY 1").fetchall()
    assert [tuple(r) for r in kept] == [("Q001", "B"), ("Q002", "A"), ("Q003", "A")]
    # and B, the active device, saves edits of now
    now = save_body({"Q001": ("B2", 2)}, updated=now_stamp(), device="B")
    assert (await save(client, bearer(b), now)).status_code == 200


async def test_after_the_end_a_late_save_of_the_replaced_device_is_checked_too(
    client: Client, admin: dict[str, str], db: sqlite3.Connection
) -> None:
    await started(client, admin)
    a = await sign_in(client, deviceId="A")
    await sign_in(client, deviceId="B")
    since_takeover = now_stamp()
    await client.post(f"/api/v1/admin/plans/{PLAN_ID}/end", headers=admin)
    made_since = save_body({"Q001": ("A", 1)}, updated=since_takeover)
    await error_of(await save(client, bearer(a), made_since), 409, "device_replaced")
    made_before = save_body({"Q002": ("A", 1)}, updated=at(1))
    response = await save(client, bearer(a), made_before)
    assert response.status_code == 200 and (await response.get_json())["late"] is True
    assert [tuple(r) for r in db.execute("SELECT quiz_code, late FROM answer")] == [("Q002", 1)]


async def test_a_token_from_before_devices_is_never_refused(
    client: Client, admin: dict[str, str], runtime: Runtime
) -> None:
    await started(client, admin)
    await sign_in(client, deviceId="B")
    signer = URLSafeTimedSerializer(SECRET_KEY, salt="examsync-session-v1")
    old = signer.dumps(["candidate", PLAN_ID, "CAND202301", "GROUP01"])
    assert runtime.tokens.verify(old).device_id == ""
    body = save_body({"Q001": ("1", 1)}, updated=now_stamp())
    assert (await save(client, {"Authorization": f"Bearer {old}"}, body)).status_code == 200


# -- `merge` --------------------------------------------------------------------------------------


async def test_merge_refuses_nobody_but_still_tells_the_devices(
    client: Client, admin: dict[str, str], runtime: Runtime, db: sqlite3.Connection
) -> None:
    await started(client, admin, "merge")
    a = await sign_in(client, deviceId="A")
    async with peer(socket_url(runtime), a["token"]) as p:
        b = await sign_in(client, deviceId="B")
        told = await p.next_of("device_active")
    assert (told["deviceId"], told["policy"]) == ("B", "merge")
    assert b["replacedDevice"] is None and b["activeDevice"]["deviceId"] == "B"
    assert record(db)[0] == "B"  # kept for the supervisors
    for session, quiz in ((a, "Q001"), (b, "Q002"), (a, "Q003")):
        body = save_body({quiz: ("x", 1)}, updated=now_stamp())
        response = await save(client, bearer(session), body)
        assert response.status_code == 200, await response.get_json()
    assert db.execute("SELECT COUNT(*) FROM answer").fetchone()[0] == 3


# -- supervisors, Redis loss ---------------------------------------------------------------------


async def test_the_snapshot_shows_each_examinees_active_device(
    client: Client, admin: dict[str, str]
) -> None:
    await started(client, admin)
    b = await sign_in(client, deviceId="tablet-2")
    sup = (await login(client, SUPERVISOR_01))["token"]
    response = await client.get(
        "/api/v1/supervisor/snapshot", headers={"Authorization": f"Bearer {sup}"}
    )
    examinees = {e["examineeId"]: e for e in (await response.get_json())["examinees"]}
    assert (examinees["CAND202301"]["activeDevice"], examinees["CAND202301"]["activeSince"]) == (
        "tablet-2",
        b["activeDevice"]["since"],
    )
    assert (examinees["CAND202303"]["activeDevice"], examinees["CAND202303"]["activeSince"]) == (
        None,
        None,
    )


async def test_a_flushed_redis_gets_the_active_devices_back_from_sqlite(
    client: Client, admin: dict[str, str], db: sqlite3.Connection, sync_redis: Any
) -> None:
    await started(client, admin)
    a = await sign_in(client, deviceId="A")
    b = await sign_in(client, deviceId="B")
    held = sync_redis.hgetall(DEVICES)
    since_ms = round(parse_timestamp(b["activeDevice"]["since"]) * 1000)
    assert held == {"CAND202301": f"B {since_ms}", "CAND202301 A": str(since_ms)}
    sync_redis.flushall()
    await eventually(lambda: sync_redis.hget(f"exam_plan:{PLAN_ID}", "status") == "in_progress")
    # written before the plan hash; when A lost the exam is not in SQLite: B's since stands in
    assert sync_redis.hgetall(DEVICES) == {"CAND202301": f"B {since_ms}"}
    body = save_body({"Q001": ("1", 1)}, updated=now_stamp())
    await error_of(await save(client, bearer(a), body), 409, "device_replaced")
    assert nothing_stored(db, sync_redis)


async def test_a_third_device_does_not_let_through_what_a_replaced_one_edited_meanwhile(
    client: Client, admin: dict[str, str], db: sqlite3.Connection, sync_redis: Any
) -> None:
    """B takes over from A; A edits (held there); C takes over from B. A's edit, made after it
    lost the exam, is still refused (it is later than B's since, not C's); B's edits made
    before C's takeover are taken; A signing in again may save anything."""
    await started(client, admin)
    a = await sign_in(client, deviceId="A")
    b = await sign_in(client, deviceId="B")
    a_edit = save_body({"Q001": ("from A", 1)}, updated=now_stamp(), device="A")
    b_edit = save_body({"Q002": ("from B", 1)}, updated=now_stamp(), device="B")
    time.sleep(0.005)
    c = await sign_in(client, deviceId="C")
    assert c["replacedDevice"] == "B"
    details = await error_of(await save(client, bearer(a), a_edit), 409, "device_replaced")
    assert details == {
        "activeDevice": "C",
        "since": c["activeDevice"]["since"],
        "replacedSince": b["activeDevice"]["since"],
    }
    assert (await save(client, bearer(b), b_edit)).status_code == 200
    late_b = save_body({"Q003": ("30", 1)}, updated=now_stamp(), device="B")
    details = await error_of(await save(client, bearer(b), late_b), 409, "device_replaced")
    assert details["replacedSince"] == c["activeDevice"]["since"]
    again = await sign_in(client, deviceId="A")
    assert again["replacedDevice"] == "C"
    assert sync_redis.hget(DEVICES, "CAND202301 A") is None  # A has the exam again
    assert (await save(client, bearer(again), a_edit)).status_code == 200
    stored = dict(db.execute("SELECT quiz_code, value FROM answer").fetchall())
    assert stored == {"Q001": "from A", "Q002": "from B"}


async def test_a_sign_in_works_while_redis_refuses_writes_and_the_repair_copies_it(
    client: Client, admin: dict[str, str], db: sqlite3.Connection, sync_redis: Any
) -> None:
    """The candidate can sign in (and answer on the device) while Redis takes no writes; the
    record is in SQLite at once, in Redis once the repair can write it."""
    await started(client, admin)
    await sign_in(client, deviceId="A")
    sync_redis.config_set("maxmemory", "1")  # every write is refused (noeviction): an outage
    try:
        b = await sign_in(client, deviceId="B")
        assert (b["activeDevice"]["deviceId"], b["replacedDevice"]) == ("B", "A")
        assert record(db)[0] == "B"
        assert sync_redis.hget(DEVICES, "CAND202301").startswith("A ")
    finally:
        sync_redis.config_set("maxmemory", "0")
    await eventually(lambda: sync_redis.hget(DEVICES, "CAND202301").startswith("B "))
    await eventually(lambda: len(events(sync_redis)) == 2)  # the outbox relayed the event
