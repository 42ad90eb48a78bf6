"""Every admin endpoint against bad input (issue 2, DESIGN §4).

Each case asserts the documented status and exact error code, the error shape
`{"error": {"code", "message", "details"}}`, and that the request changed nothing: every SQLite
table, every Redis key and every stored file are the same before and after.

A refused request changes nothing, so the cases of a group share one server: one test (one app)
per group, one subtest per case. A fresh server per case would make this file take half a minute.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from pytest import Subtests
from quart.typing import TestClientProtocol as Client

from examsync_server.access.tokens import Principal
from examsync_server.demo.sample import PLAN_ID, sample_package, sample_plan

from .conftest import (
    ADMIN_TOKEN,
    MISSING,
    cases,
    error_of,
    load_plan,
    login,
    other_plan,
    plan_with,
    problem_fields,
    session_token,
)

State = Callable[[], dict[str, Any]]
BASE = "/api/v1/admin/plans"

# name: (method, path after /plans/{plan_id})
ENDPOINTS: dict[str, tuple[str, str]] = {
    "put_plan": ("PUT", ""),
    "put_package": ("PUT", "/package"),
    "prepare": ("POST", "/prepare"),
    "start": ("POST", "/start"),
    "end": ("POST", "/end"),
    "advance": ("POST", "/advance"),
    "resync": ("POST", "/resync"),
    "status": ("GET", ""),
    "candidates": ("GET", "/candidates"),
}


async def send(
    client: Client,
    endpoint: str,
    headers: dict[str, str],
    plan_id: str = PLAN_ID,
    body: bytes | None = None,
) -> Any:
    """Call an endpoint; without `body`, with a body it would accept from the admin."""
    method, suffix = ENDPOINTS[endpoint]
    headers = dict(headers)
    if body is None:
        if endpoint == "put_plan":
            plan = sample_plan()
            plan["exam_plan"]["plan_id"] = plan_id
            body = json.dumps(plan).encode()
        elif endpoint == "put_package":
            body = sample_package()
            headers["X-Content-SHA256"] = hashlib.sha256(body).hexdigest()
        elif endpoint == "advance":
            body = b"{}"
    if body is not None and endpoint != "put_package":
        headers.setdefault("Content-Type", "application/json")
    return await client.open(f"{BASE}/{plan_id}{suffix}", method=method, headers=headers, data=body)


async def set_plan_state(client: Client, admin: dict[str, str], status: str) -> None:
    """Bring the sample plan to `status` (`bare`: imported, no package, not prepared)."""
    if status == "bare":
        response = await client.put(f"{BASE}/{PLAN_ID}", json=sample_plan(), headers=admin)
        assert response.status_code == 201
        return
    await load_plan(client, admin, prepare=status != "created")
    steps = {"in_progress": ["start"], "completed": ["start", "end"]}.get(status, [])
    for step in steps:
        response = await client.post(f"{BASE}/{PLAN_ID}/{step}", headers=admin)
        assert response.status_code == 200, await response.get_json()


# -- who is calling ------------------------------------------------------------------------------


async def authorization(client: Client, kind: str | None) -> dict[str, str]:
    if kind is None:
        return {}
    people = {
        "candidate": {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"},
        "supervisor": {"planId": PLAN_ID, "supervisorId": "SUP202301", "authCode": "SUPAUTH01"},
    }
    if kind in people:
        return {"Authorization": f"Bearer {(await login(client, people[kind]))['token']}"}
    someone = Principal("candidate", PLAN_ID, "CAND202301", "GROUP01")
    if kind == "expired-session":
        return {"Authorization": f"Bearer {session_token(someone, issued_ago=13 * 3600)}"}
    if kind == "other-secret":
        return {"Authorization": f"Bearer {session_token(someone, secret='another-secret')}"}
    return {"Authorization": kind}


AUTH_CASES = [
    pytest.param(None, 401, "missing_token", id="no-header"),
    pytest.param("", 401, "missing_token", id="empty-header"),
    pytest.param("Bearer forged.token.value", 401, "invalid_token", id="forged"),
    pytest.param(f"Bearer {ADMIN_TOKEN}x", 401, "invalid_token", id="admin-token-altered"),
    pytest.param(f"Bearer {ADMIN_TOKEN[:-1]}", 401, "invalid_token", id="admin-token-prefix"),
    pytest.param("other-secret", 401, "invalid_token", id="session-of-another-secret"),
    pytest.param("expired-session", 401, "invalid_token", id="expired-session"),
    pytest.param(ADMIN_TOKEN, 401, "invalid_token", id="malformed-no-scheme"),
    pytest.param(f"Basic {ADMIN_TOKEN}", 401, "invalid_token", id="malformed-basic"),
    pytest.param("Bearer", 401, "invalid_token", id="malformed-scheme-only"),
    pytest.param("candidate", 403, "admin_only", id="candidate-session"),
    pytest.param("supervisor", 403, "admin_only", id="supervisor-session"),
]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_admin_endpoints_need_the_admin_token(
    client: Client, admin: dict[str, str], state: State, subtests: Subtests, endpoint: str
) -> None:
    await load_plan(client, admin)
    for name, (kind, status, code) in cases(AUTH_CASES):
        with subtests.test(name):
            headers = await authorization(client, kind)
            before = state()
            response = await send(client, endpoint, headers)
            await error_of(response, status, code)
            assert state() == before


async def test_the_admin_token_is_accepted_with_any_case_of_the_scheme(
    client: Client, admin: dict[str, str]
) -> None:
    await load_plan(client, admin)
    response = await send(client, "status", {"Authorization": f"bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200


# -- which plan ----------------------------------------------------------------------------------


async def test_unknown_plan_is_404(
    client: Client, admin: dict[str, str], state: State, subtests: Subtests
) -> None:
    await load_plan(client, admin)
    for endpoint in ENDPOINTS:
        if endpoint == "put_plan":  # creates the plan
            continue
        with subtests.test(endpoint):
            before = state()
            response = await send(client, endpoint, admin, plan_id="PLAN209999")
            assert await error_of(response, 404, "plan_not_found") == {"plan_id": "PLAN209999"}
            assert state() == before


BAD_PATH_IDS = {
    "space": "bad%20id",
    "leading-dash": "-starts-with-dash",
    "too-long": "P" * 65,
    "not-ascii": "%ED%95%9C%EA%B8%80",
    "semicolon": "a%3Bdrop",
}


async def test_invalid_plan_id_in_the_path_is_422(
    client: Client, admin: dict[str, str], state: State, subtests: Subtests
) -> None:
    await load_plan(client, admin)
    for endpoint in ENDPOINTS:
        for name, bad_id in BAD_PATH_IDS.items():
            with subtests.test(f"{endpoint}-{name}"):
                before = state()
                response = await send(client, endpoint, admin, plan_id=bad_id)
                details = await error_of(response, 422, "invalid_request")
                assert problem_fields(details) == ["plan_id"]
                assert state() == before


# -- the plan import body -----------------------------------------------------------------------


def renamed_group(plan: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    plan = copy.deepcopy(plan)
    for item in [*plan["groups"], *plan["candidates"], *plan["supervisors"]]:
        if item.get("group_id") == old:
            item["group_id"] = new
    return plan


def raw(text: str | bytes) -> bytes:
    return text.encode() if isinstance(text, str) else text


NOT_JSON_CASES = [
    pytest.param(b"", 400, "empty_body", id="empty"),
    pytest.param(raw('{"exam_plan": {'), 400, "invalid_json", id="truncated"),
    pytest.param(raw("{'exam_plan': 1}"), 400, "invalid_json", id="single-quotes"),
    pytest.param(raw("{} {}"), 400, "invalid_json", id="trailing-data"),
    pytest.param(b'{"exam_name": "\xff\xfe"}', 400, "invalid_json", id="not-utf8"),
    pytest.param(raw('{"exam_plan": NaN}'), 400, "invalid_json", id="nan"),
    pytest.param(raw('{"exam_plan": 1e999}'), 400, "invalid_json", id="out-of-range"),
    pytest.param(raw('{"exam_plan": -Infinity}'), 400, "invalid_json", id="infinity"),
    # deeper than the parser's recursion limit, yet under the small routes' body limit
    pytest.param(raw("[" * 30_000 + "]" * 30_000), 400, "invalid_json", id="deeply-nested"),
    pytest.param(raw('{"exam_plan": ' + "9" * 5000 + "}"), 400, "invalid_json", id="huge-int"),
]


@pytest.mark.parametrize("endpoint", ["put_plan", "advance"])
async def test_body_that_is_not_json_is_400(
    client: Client, admin: dict[str, str], state: State, subtests: Subtests, endpoint: str
) -> None:
    await set_plan_state(client, admin, "in_progress" if endpoint == "advance" else "ready")
    for name, (body, status, code) in cases(NOT_JSON_CASES):
        if endpoint == "advance" and code == "empty_body":
            continue  # advance's body is optional: empty means "move the plan on"
        with subtests.test(name):
            before = state()
            response = await send(client, endpoint, admin, body=body)
            await error_of(response, status, code)
            assert state() == before


PLAN_422_CASES = [
    # not an object
    pytest.param([], [""], id="list-body"),
    pytest.param(None, [""], id="null-body"),
    pytest.param("a plan", [""], id="string-body"),
    pytest.param(plan_with(("exam_plan", [])), ["exam_plan"], id="list-for-object"),
    pytest.param(plan_with(("stages", {})), ["stages"], id="object-for-list"),
    # wrong types: strict, nothing is guessed
    pytest.param(
        plan_with(("exam_plan.requires_camera", "true")),
        ["exam_plan.requires_camera"],
        id="string-for-bool",
    ),
    pytest.param(
        plan_with(("exam_plan.shuffle_answers", 1)),
        ["exam_plan.shuffle_answers"],
        id="number-for-bool",
    ),
    pytest.param(
        plan_with(("stages.0.auto_move_enabled", "TRUE")),
        ["stages.0.auto_move_enabled"],
        id="spreadsheet-bool",
    ),
    pytest.param(
        plan_with(("exam_plan.exam_name", 2024)), ["exam_plan.exam_name"], id="number-for-string"
    ),
    pytest.param(
        plan_with(("candidates.0.candidate_auth_code", 1234)),
        ["candidates.0.candidate_auth_code"],
        id="number-for-auth-code",
    ),
    pytest.param(
        plan_with(("stages.0.time_limit_seconds", "300")),
        ["stages.0.time_limit_seconds"],
        id="string-for-int",
    ),
    pytest.param(
        plan_with(("stages.0.time_limit_seconds", 1.5)),
        ["stages.0.time_limit_seconds"],
        id="float-for-int",
    ),
    pytest.param(
        plan_with(("stages.0.time_limit_seconds", True)),
        ["stages.0.time_limit_seconds"],
        id="bool-for-int",
    ),
    pytest.param(
        plan_with(("stages.0.time_limit_seconds", -5)),
        ["stages.0.time_limit_seconds"],
        id="negative-seconds",
    ),
    pytest.param(
        plan_with(("exam_plan.camera_capture_interval", 10**30)),
        ["exam_plan.camera_capture_interval"],
        id="huge-interval",
    ),
    pytest.param(
        plan_with(("candidates.0.additional_info", ["school"])),
        ["candidates.0.additional_info"],
        id="list-for-info-object",
    ),
    pytest.param(
        plan_with(("exam_plan.start_datetime", "yesterday")),
        ["exam_plan.start_datetime"],
        id="not-a-datetime",
    ),
    pytest.param(
        plan_with(("exam_plan.login_method", "sms")),
        ["exam_plan.login_method"],
        id="unknown-login-method",
    ),
    pytest.param(
        plan_with(("exam_plan.conduct_type", "sometimes")),
        ["exam_plan.conduct_type"],
        id="unknown-conduct-type",
    ),
    pytest.param(
        plan_with(("exam_plan.exam_name", "가" * 201)), ["exam_plan.exam_name"], id="name-too-long"
    ),
    pytest.param(plan_with(("exam_plan.exam_name", "")), ["exam_plan.exam_name"], id="empty-name"),
    pytest.param(
        plan_with(("candidates.0.candidate_auth_code", "abc")),
        ["candidates.0.candidate_auth_code"],
        id="auth-code-too-short",
    ),
    pytest.param(
        plan_with(("candidates.1.candidate_id", "CAND 2")),
        ["candidates.1.candidate_id"],
        id="invalid-id-in-body",
    ),
    pytest.param(
        plan_with(("stages.1.exam_code", "../EXAM")), ["stages.1.exam_code"], id="invalid-code"
    ),
    # missing required fields
    pytest.param(plan_with(("exam_plan", MISSING)), ["exam_plan"], id="missing-exam-plan"),
    pytest.param(plan_with(("stages", MISSING)), ["stages"], id="missing-stages"),
    pytest.param(plan_with(("stages", [])), ["stages"], id="no-stages"),
    pytest.param(
        plan_with(("exam_plan.exam_name", MISSING)),
        ["exam_plan.exam_name"],
        id="missing-exam-name",
    ),
    pytest.param(
        plan_with(("exam_plan.start_datetime", MISSING)),
        ["exam_plan.start_datetime"],
        id="missing-start",
    ),
    pytest.param(
        plan_with(("stages.0.stage_id", MISSING)), ["stages.0.stage_id"], id="missing-stage-id"
    ),
    pytest.param(
        plan_with(("candidates.3.candidate_auth_code", MISSING)),
        ["candidates.3.candidate_auth_code"],
        id="missing-auth-code",
    ),
    pytest.param(
        plan_with(("supervisors.0.supervisor_auth_code", MISSING)),
        ["supervisors.0.supervisor_auth_code"],
        id="missing-supervisor-code",
    ),
    # unknown fields (extra=forbid): a typo is caught, not ignored
    pytest.param(plan_with(("exam_plans", {})), ["exam_plans"], id="unknown-top-field"),
    pytest.param(
        plan_with(("exam_plan.examName", "x")), ["exam_plan.examName"], id="unknown-plan-field"
    ),
    pytest.param(
        plan_with(("candidates.0.password", "x")),
        ["candidates.0.password"],
        id="unknown-candidate-field",
    ),
    pytest.param(
        plan_with(("stages.1.time_limit", 60)), ["stages.1.time_limit"], id="unknown-stage-field"
    ),
    # rules across fields
    pytest.param(
        plan_with(("exam_plan.end_datetime", "2020-01-01 09:00:00")),
        ["exam_plan"],
        id="end-before-start",
    ),
    pytest.param(
        plan_with(
            ("exam_plan.start_datetime", "2024-01-15 09:00:00"),
            ("exam_plan.end_datetime", "2024-01-15T09:00:00Z"),
        ),
        ["exam_plan"],
        id="end-equals-start",
    ),
    pytest.param(
        plan_with(
            ("groups.0.start_datetime", "2024-01-15 12:00:00"),
            ("groups.0.end_datetime", "2024-01-15 09:00:00"),
        ),
        ["groups.0"],
        id="group-end-before-start",
    ),
    pytest.param(
        plan_with(("exam_plan.requires_camera", True), ("exam_plan.camera_capture_interval", None)),
        ["exam_plan"],
        id="camera-without-interval",
    ),
    pytest.param(
        plan_with(("exam_plan.plan_id", "PLAN202498")),
        ["exam_plan.plan_id"],
        id="plan-id-differs-from-path",
    ),
    pytest.param(
        plan_with(("candidates.0.additional_info", {"note": "\ud800"})),
        ["candidates.0.additional_info"],
        id="lone-surrogate-in-info",
    ),
    pytest.param(
        plan_with(("candidates.0.additional_info", {"a": [{"\udc80": 1}]})),
        ["candidates.0.additional_info"],
        id="lone-surrogate-in-nested-key",
    ),
]


@pytest.mark.parametrize("target", ["replace", "create"])
async def test_invalid_plan_import_is_422_and_changes_nothing(
    client: Client, admin: dict[str, str], state: State, subtests: Subtests, target: str
) -> None:
    """Replacing the prepared sample plan, or creating a new plan, with a bad body."""
    await load_plan(client, admin)
    plan_id = PLAN_ID if target == "replace" else "PLAN202499"
    for name, (body, fields) in cases(PLAN_422_CASES):
        if (
            target == "create"
            and isinstance(body, dict)
            and isinstance(body.get("exam_plan"), dict)
        ):
            body = copy.deepcopy(body)
            if body["exam_plan"].get("plan_id") == PLAN_ID:
                del body["exam_plan"]["plan_id"]
        with subtests.test(name):
            before = state()
            # json.dumps escapes a lone surrogate as \ud800, as a client's JSON encoder would
            data = json.dumps(body).encode()
            response = await send(client, "put_plan", admin, plan_id=plan_id, body=data)
            details = await error_of(response, 422, "invalid_request")
            assert set(fields) <= set(problem_fields(details)), details
            assert state() == before


DUPLICATE_CASES = [
    pytest.param("stages.1.stage_id", "STEP01", "duplicate stage_id: STEP01", id="stage"),
    pytest.param("groups.1.group_id", "GROUP01", "duplicate group_id: GROUP01", id="group"),
    pytest.param(
        "candidates.1.candidate_id", "CAND202301", "duplicate candidate_id: CAND202301", id="cand"
    ),
    pytest.param(
        "supervisors.1.supervisor_id", "SUP202301", "duplicate supervisor_id: SUP202301", id="sup"
    ),
    pytest.param("candidates.1.access_key", "KEY-CAND202301", "duplicate access_key", id="key"),
    pytest.param("candidates.1.group_id", "GROUP99", "unknown group_id 'GROUP99'", id="cand-group"),
    pytest.param("supervisors.0.group_id", "GROUP99", "unknown group_id 'GROUP99'", id="sup-group"),
]


async def test_duplicate_ids_and_unknown_groups_are_422(
    client: Client, admin: dict[str, str], state: State, subtests: Subtests
) -> None:
    await load_plan(client, admin)
    for name, (path, value, problem) in cases(DUPLICATE_CASES):
        with subtests.test(name):
            before = state()
            body = plan_with((str(path), value))
            if name == "group":  # nobody may be left in the group that is now a duplicate
                body = renamed_group(body, "GROUP02", "GROUP01")
                body["groups"][1]["group_id"] = value
            response = await client.put(f"{BASE}/{PLAN_ID}", json=body, headers=admin)
            details = await error_of(response, 422, "invalid_request")
            assert [p["problem"] for p in details["problems"]] == [f"Value error, {problem}"]
            assert "KEY-CAND2023" not in json.dumps(await response.get_json())  # keys: never
            assert state() == before


FOREIGN_ID_CASES = [
    pytest.param("candidates.0.candidate_id", "CAND202301", ["CAND202301"], id="candidate_id"),
    pytest.param("supervisors.0.supervisor_id", "SUP202301", ["SUP202301"], id="supervisor_id"),
    pytest.param("groups.0.group_id", "GROUP01", ["GROUP01"], id="group_id"),
    pytest.param("candidates.0.access_key", "KEY-CAND202305", [], id="access_key"),
]


async def test_ids_owned_by_another_plan_are_409(
    client: Client, admin: dict[str, str], state: State, subtests: Subtests
) -> None:
    """PLAN202402 (prepared) is replaced with ids that PLAN202401 owns."""
    await load_plan(client, admin)
    await load_plan(client, admin, plan=other_plan(), plan_id="PLAN202402")
    for name, (path, value, shown) in cases(FOREIGN_ID_CASES):
        with subtests.test(name):
            before = state()
            if name == "group_id":
                body = renamed_group(other_plan(), "GROUP01B", str(value))
            else:
                body = plan_with((str(path), value), base=other_plan())
            response = await client.put(f"{BASE}/PLAN202402", json=body, headers=admin)
            details = await error_of(response, 409, "id_conflict")
            assert details == {"field": name, "ids": shown}
            assert "KEY-CAND202305" not in json.dumps(await response.get_json())
            assert state() == before


async def test_a_key_the_plan_already_issued_cannot_be_given_to_another_candidate(
    client: Client, admin: dict[str, str], state: State
) -> None:
    """A replaced plan keeps issued keys: CAND202301 keeps its key when the import names none,
    so giving that key to CAND202302 collides inside the plan itself."""
    await load_plan(client, admin)
    before = state()
    body = plan_with(
        ("candidates.0.access_key", MISSING), ("candidates.1.access_key", "KEY-CAND202301")
    )
    response = await client.put(f"{BASE}/{PLAN_ID}", json=body, headers=admin)
    details = await error_of(response, 409, "id_conflict")
    assert details["field"] == "access_key" and details["ids"] == []
    assert "KEY-CAND202301" not in json.dumps(await response.get_json())
    assert state() == before


# -- advance's body ------------------------------------------------------------------------------


ADVANCE_CASES = [
    pytest.param([], 422, "invalid_request", [""], id="list"),
    pytest.param({"candidateId": 5}, 422, "invalid_request", ["candidateId"], id="int-id"),
    pytest.param({"fromStage": True}, 422, "invalid_request", ["fromStage"], id="bool-stage"),
    pytest.param({"stage": "STEP02"}, 422, "invalid_request", ["stage"], id="unknown-field"),
    pytest.param({"candidateId": "CAND202301"}, 422, "invalid_request", [""], id="cand-in-sim"),
    pytest.param({"fromStage": "STEP02"}, 409, "stage_changed", None, id="stale-from-stage"),
]


async def test_advance_refuses_bad_bodies(
    client: Client, admin: dict[str, str], state: State, subtests: Subtests
) -> None:
    await set_plan_state(client, admin, "in_progress")
    for name, (body, status, code, fields) in cases(ADVANCE_CASES):
        with subtests.test(name):
            before = state()
            response = await send(client, "advance", admin, body=json.dumps(body).encode())
            details = await error_of(response, status, code)
            if fields is not None:
                assert problem_fields(details) == fields
            assert state() == before


async def test_advance_of_an_unknown_examinee_is_404(
    client: Client, admin: dict[str, str], state: State
) -> None:
    plan = plan_with(("exam_plan.conduct_type", "개별시험"))
    await load_plan(client, admin, plan=plan)
    await client.post(f"{BASE}/{PLAN_ID}/start", headers=admin)
    before = state()
    response = await send(client, "advance", admin, body=b'{"candidateId": "CAND209999"}')
    await error_of(response, 404, "candidate_not_found")
    assert state() == before


# -- state transitions --------------------------------------------------------------------------


WRONG_TRANSITIONS = {
    # plan status: {endpoint: code}; "bare" is created without a package
    "bare": {"prepare": "package_missing", "start": "plan_not_prepared"},
    "created": {
        "start": "plan_not_prepared",
        "end": "plan_not_prepared",
        "advance": "plan_not_prepared",
    },
    "ready": {"end": "plan_not_started", "advance": "plan_not_started"},
    "in_progress": {
        "put_plan": "plan_locked",
        "put_package": "plan_locked",
        "prepare": "plan_in_progress",
    },
    "completed": {
        "put_plan": "plan_locked",
        "put_package": "plan_locked",
        "prepare": "plan_completed",
        "start": "plan_completed",
        "advance": "plan_completed",
    },
}


@pytest.mark.parametrize("status", WRONG_TRANSITIONS)
async def test_wrong_state_transitions_are_409(
    client: Client, admin: dict[str, str], state: State, subtests: Subtests, status: str
) -> None:
    await set_plan_state(client, admin, status)
    for endpoint, code in WRONG_TRANSITIONS[status].items():
        with subtests.test(endpoint):
            before = state()
            response = await send(client, endpoint, admin)
            details = await error_of(response, 409, code)
            assert details["plan_id"] == PLAN_ID
            if code.startswith("plan_"):
                assert details["status"] == ("created" if status == "bare" else status)
            assert state() == before


# -- size ---------------------------------------------------------------------------------------

SMALL_JSON = {"max_json_body_bytes": 4096, "max_small_body_bytes": 4096}


@pytest.mark.parametrize("settings_overrides", [SMALL_JSON])
@pytest.mark.parametrize("endpoint", ["put_plan", "advance"])
async def test_oversize_json_body_is_413(
    client: Client, admin: dict[str, str], state: State, endpoint: str
) -> None:
    small = sample_plan(candidates=2)
    await load_plan(client, admin, plan=small)
    if endpoint == "advance":
        await client.post(f"{BASE}/{PLAN_ID}/start", headers=admin)
    before = state()
    big = sample_plan(candidates=40) if endpoint == "put_plan" else {"fromStage": "S" * 5000}
    assert len(json.dumps(big)) > 4096
    response = await send(client, endpoint, admin, body=json.dumps(big).encode())
    assert await error_of(response, 413, "payload_too_large") == {"limit": 4096}
    assert state() == before
    # the limit is on the body: one under it is served
    small_body = small if endpoint == "put_plan" else {}
    response = await send(client, endpoint, admin, body=json.dumps(small_body).encode())
    assert response.status_code == 200, await response.get_json()
