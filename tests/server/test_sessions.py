"""Sessions (POST /api/v1/sessions) and what a session token may reach.

Web login, key login and supervisor login; one answer for every wrong id or code; signed,
expiring tokens that are never interchangeable with the admin token.
"""

from __future__ import annotations

import json
import time
import zlib
from datetime import UTC, datetime
from typing import Any

import pytest
from itsdangerous import URLSafeTimedSerializer
from itsdangerous.encoding import base64_decode, base64_encode
from pytest import Subtests
from quart.typing import TestAppProtocol as App
from quart.typing import TestClientProtocol as Client

from examsync_server.access.tokens import Principal, Tokens
from examsync_server.demo.sample import PLAN_ID
from examsync_server.errors import ApiError
from examsync_server.runtime import Runtime

from .conftest import (
    ADMIN_TOKEN,
    MISSING,
    SECRET_KEY,
    cases,
    error_of,
    load_plan,
    login,
    other_plan,
    plan_with,
    problem_fields,
    session_token,
)

WEB = {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"}
SUPERVISOR = {"planId": PLAN_ID, "supervisorId": "SUP202301", "authCode": "SUPAUTH01"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def me(client: Client, token: str) -> Any:
    return await client.get("/api/v1/me", headers=bearer(token))


# -- logging in ---------------------------------------------------------------------------------


async def test_web_login_answers_token_socket_url_plan_config_stages_and_time(
    client: Client, admin: dict[str, str], runtime: Runtime
) -> None:
    await load_plan(client, admin)
    body = await login(client, WEB)
    assert body["tokenType"] == "Bearer" and body["expiresIn"] == 12 * 3600
    assert (body["role"], body["planId"], body["candidateId"], body["groupId"]) == (
        "candidate",
        PLAN_ID,
        "CAND202301",
        "GROUP01",
    )
    assert runtime.sockets is not None
    assert body["socketUrl"] == f"ws://localhost:{runtime.sockets.port}/ws"
    server_time = datetime.fromisoformat(body["serverTime"])
    assert abs((datetime.now(UTC) - server_time).total_seconds()) < 5
    assert body["stages"] == [
        {
            "stageId": "STEP01",
            "stageName": "시스템 점검",
            "order": 0,
            "timeLimitSeconds": 300,
            "autoMoveEnabled": True,
            "examCode": None,
            "allocatedExamTime": None,
            "durationSeconds": 300,
        },
        {
            "stageId": "STEP02",
            "stageName": "본 시험",
            "order": 1,
            "timeLimitSeconds": 7200,
            "autoMoveEnabled": True,
            "examCode": "EXAM202401",
            "allocatedExamTime": 7200,
            "durationSeconds": 7200,
        },
    ]
    assert body["progress"]["candidateId"] == "CAND202301"
    assert body["progress"]["status"] == "ready"
    # no credential of anyone comes back
    text = json.dumps(body, ensure_ascii=False)
    for secret in ("AUTH123", "KEY-CAND", "SUPAUTH", "auth_code", "access_key"):
        assert secret not in text
    response = await me(client, body["token"])
    assert response.status_code == 200


FLAG_NAMES = (
    "loginMethod",
    "conductType",
    "requiresSupervisor",
    "enablesCheatingDetection",
    "requiresCamera",
    "cameraCaptureInterval",
    "enablesAiMonitoring",
    "enablesGazeTracking",
    "allowsMobileCamera",
    "shuffleQuestions",
    "shuffleAnswers",
)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param(
            {},
            ("web", "simultaneous", True, False, True, 10, True, False, True, True, True),
            id="sample-plan",
        ),
        pytest.param(
            {
                "conduct_type": "개별시험",
                "requires_supervisor": False,
                "enables_cheating_detection": True,
                "requires_camera": False,
                "camera_capture_interval": 45,
                "enables_ai_monitoring": False,
                "enables_gaze_tracking": True,
                "allows_mobile_camera": False,
                "shuffle_questions": False,
                "shuffle_answers": False,
            },
            ("web", "individual", False, True, False, 45, False, True, False, False, False),
            id="every-flag-flipped",
        ),
    ],
)
async def test_session_carries_every_seed_003_flag(
    client: Client, admin: dict[str, str], changes: dict[str, Any], expected: tuple[Any, ...]
) -> None:
    plan = plan_with(*((f"exam_plan.{name}", value) for name, value in changes.items()))
    await load_plan(client, admin, plan=plan)
    for body in (await login(client, WEB), await login(client, SUPERVISOR)):
        assert tuple(body["plan"][name] for name in FLAG_NAMES) == expected
        assert body["plan"]["planId"] == PLAN_ID and body["plan"]["status"] == "ready"


async def test_supervisor_login(client: Client, admin: dict[str, str]) -> None:
    await load_plan(client, admin)
    body = await login(client, {**SUPERVISOR, "supervisorId": "SUP202302", "authCode": "SUPAUTH02"})
    assert (body["role"], body["supervisorId"], body["groupId"]) == (
        "supervisor",
        "SUP202302",
        "GROUP02",
    )
    assert "progress" not in body and "candidateId" not in body
    response = await me(client, body["token"])
    assert await response.get_json() == {
        "role": "supervisor",
        "planId": PLAN_ID,
        "supervisorId": "SUP202302",
        "groupId": "GROUP02",
    }


def key_plan() -> dict[str, Any]:
    """A key-login plan; CAND202301's key is generated at import, the others' are given."""
    return plan_with(("exam_plan.login_method", "키 인증"), ("candidates.0.access_key", MISSING))


async def test_key_login_with_the_key_the_admin_hands_out(
    client: Client, admin: dict[str, str]
) -> None:
    await load_plan(client, admin, plan=key_plan())
    response = await client.get(f"/api/v1/admin/plans/{PLAN_ID}/candidates", headers=admin)
    keys = {c["candidate_id"]: c["access_key"] for c in (await response.get_json())["candidates"]}
    assert keys["CAND202302"] == "KEY-CAND202302" and len(keys["CAND202301"]) >= 12
    for candidate_id in ("CAND202301", "CAND202302"):
        body = await login(client, {"planId": PLAN_ID, "key": keys[candidate_id]})
        assert (body["role"], body["candidateId"]) == ("candidate", candidate_id)
        assert body["plan"]["loginMethod"] == "key"
    # supervisors log in with their code whatever the candidates' method
    assert (await login(client, SUPERVISOR))["role"] == "supervisor"


@pytest.mark.parametrize(
    ("method", "body"),
    [
        pytest.param("key", WEB, id="web-login-on-a-key-plan"),
        pytest.param("web", {"planId": PLAN_ID, "key": "KEY-CAND202301"}, id="key-login-on-web"),
    ],
)
async def test_login_method_of_the_plan_is_enforced(
    client: Client, admin: dict[str, str], method: str, body: dict[str, str]
) -> None:
    await load_plan(client, admin, plan=key_plan() if method == "key" else None)
    response = await client.post("/api/v1/sessions", json=body)
    assert await error_of(response, 403, "login_method_not_allowed") == {"login_method": method}


async def test_every_wrong_id_or_code_gets_the_same_answer(
    client: Client, admin: dict[str, str]
) -> None:
    await load_plan(client, admin)
    await load_plan(client, admin, plan=other_plan(), plan_id="PLAN202402")
    key = {"planId": "PLAN202403", "key": "KEY-CAND202301"}
    wrong = {
        "wrong code": {**WEB, "authCode": "AUTH9999"},
        "another candidate's code": {**WEB, "authCode": "AUTH1235"},
        "code in another case": {**WEB, "authCode": "auth1234"},
        "unknown candidate": {**WEB, "candidateId": "CAND209999"},
        "candidate of another plan": {**WEB, "candidateId": "OTHER0"},
        "unknown plan": {**WEB, "planId": "PLAN209999"},
        "supervisor, wrong code": {**SUPERVISOR, "authCode": "SUPAUTH02"},
        "unknown supervisor": {**SUPERVISOR, "supervisorId": "SUP209999"},
        "supervisor of another plan": {**SUPERVISOR, "supervisorId": "SUP202301B"},
        "key, unknown plan": key,
    }
    answers = {}
    for case, body in wrong.items():
        response = await client.post("/api/v1/sessions", json=body)
        assert await error_of(response, 401, "invalid_credentials") == {}, case
        answers[case] = await response.get_json()
    assert len({json.dumps(a, sort_keys=True) for a in answers.values()}) == 1, answers


async def test_wrong_keys_get_the_same_answer(client: Client, admin: dict[str, str]) -> None:
    await load_plan(client, admin, plan=key_plan())
    other = other_plan()
    other["exam_plan"]["login_method"] = "key"
    await load_plan(client, admin, plan=other, plan_id="PLAN202402")
    answers = set()
    for key in ("KEY-WRONG", "KEY-OTHER0", "key-cand202302", "KEY-CAND202302 "):
        response = await client.post("/api/v1/sessions", json={"planId": PLAN_ID, "key": key})
        await error_of(response, 401, "invalid_credentials")
        answers.add(json.dumps(await response.get_json(), sort_keys=True))
    assert len(answers) == 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(WEB, id="web"),
        pytest.param(SUPERVISOR, id="supervisor"),
        pytest.param({"planId": PLAN_ID, "key": "KEY-CAND202301"}, id="key"),
    ],
)
async def test_login_to_a_plan_not_prepared_is_409(
    client: Client, admin: dict[str, str], body: dict[str, str]
) -> None:
    await load_plan(client, admin, prepare=False)
    response = await client.post("/api/v1/sessions", json=body)
    assert await error_of(response, 409, "plan_not_prepared") == {"plan_id": PLAN_ID}


BAD_LOGIN_BODIES = [
    pytest.param(b"", 400, "empty_body", None, id="empty"),
    pytest.param(b'{"planId": ', 400, "invalid_json", None, id="truncated"),
    pytest.param(b"\xff\xfe", 400, "invalid_json", None, id="not-utf8"),
    pytest.param(b'{"planId": NaN}', 400, "invalid_json", None, id="nan"),
    # deeper than the parser's recursion limit, yet under the login's body limit
    pytest.param(b"[" * 4_000, 400, "invalid_json", None, id="deeply-nested"),
    pytest.param(b" " * 4_097, 413, "payload_too_large", None, id="over-the-login-limit"),
    pytest.param([], 422, "invalid_request", [""], id="list"),
    pytest.param("PLAN202401", 422, "invalid_request", [""], id="string"),
    pytest.param({}, 422, "invalid_request", ["planId", "candidateId", "authCode"], id="{}"),
    pytest.param(
        {"planId": PLAN_ID}, 422, "invalid_request", ["candidateId", "authCode"], id="no-id"
    ),
    pytest.param(
        {**WEB, "candidateId": 202301}, 422, "invalid_request", ["candidateId"], id="int-id"
    ),
    pytest.param({**WEB, "authCode": 1234}, 422, "invalid_request", ["authCode"], id="int-code"),
    pytest.param({**WEB, "authCode": ""}, 422, "invalid_request", ["authCode"], id="no-code"),
    pytest.param(
        {**WEB, "authCode": "x" * 129}, 422, "invalid_request", ["authCode"], id="long-code"
    ),
    pytest.param(
        {**WEB, "authCode": "\ud800"}, 422, "invalid_request", ["authCode"], id="surrogate"
    ),
    pytest.param(
        {**WEB, "planId": "PLAN 2024"}, 422, "invalid_request", ["planId"], id="bad-plan-id"
    ),
    pytest.param({**WEB, "password": "x"}, 422, "invalid_request", ["password"], id="extra"),
    pytest.param(
        {**SUPERVISOR, "candidateId": "CAND202301"},
        422,
        "invalid_request",
        ["candidateId"],
        id="supervisor-and-candidate",
    ),
    pytest.param(
        {"planId": PLAN_ID, "key": ["KEY"]}, 422, "invalid_request", ["key"], id="list-key"
    ),
]


async def test_bad_login_bodies(client: Client, admin: dict[str, str], subtests: Subtests) -> None:
    await load_plan(client, admin)
    for name, (body, status, code, fields) in cases(BAD_LOGIN_BODIES):
        with subtests.test(name):
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            response = await client.post(
                "/api/v1/sessions", data=data, headers={"Content-Type": "application/json"}
            )
            details = await error_of(response, status, code)
            if fields is not None:
                assert problem_fields(details) == fields


@pytest.mark.parametrize("settings_overrides", [{"max_json_body_bytes": 4096}])
async def test_oversize_login_body_is_413(client: Client, admin: dict[str, str]) -> None:
    await load_plan(client, admin, plan=plan_with(("candidates", [])))
    response = await client.post("/api/v1/sessions", json={**WEB, "authCode": "A" * 5000})
    assert await error_of(response, 413, "payload_too_large") == {"limit": 4096}


async def test_a_host_header_urllib_cannot_parse_still_gets_a_socket_url(
    app: App, admin: dict[str, str], runtime: Runtime
) -> None:
    """Werkzeug passes "[1::2::3]" as a host; the socket URL falls back to the server's own."""
    client = app.app.test_client(use_cookies=False)  # type: ignore[attr-defined]
    # (without cookies: the test client's cookie jar would parse the host too, and fail)
    await load_plan(client, admin)
    response = await client.post("/api/v1/sessions", json=WEB, headers={"Host": "[1::2::3]"})
    assert response.status_code == 201
    assert runtime.sockets is not None
    assert (await response.get_json())["socketUrl"] == f"ws://127.0.0.1:{runtime.sockets.port}/ws"


# -- tokens -------------------------------------------------------------------------------------

CANDIDATE = Principal("candidate", PLAN_ID, "CAND202301", "GROUP01")


def forged_claims(claims: list[Any]) -> str:
    """Claims signed with the server's own secret and salt, but not a shape it issues."""
    return URLSafeTimedSerializer(SECRET_KEY, salt="examsync-session-v1").dumps(claims)


def tampered(token: str) -> str:
    """The token with its claims edited to another candidate, the signature left as it was.

    itsdangerous zlib-compresses a payload when that makes it shorter (a leading "."), which
    depends on the claims: the device id the server makes is random."""
    compressed = token.startswith(".")
    payload, _, rest = token.removeprefix(".").partition(".")
    claims = base64_decode(payload)
    if compressed:
        claims = zlib.decompress(claims)
    assert b"CAND202301" in claims
    edited = claims.replace(b"CAND202301", b"CAND202302")
    if compressed:
        edited = zlib.compress(edited)
    return f"{'.' if compressed else ''}{base64_encode(edited).decode()}.{rest}"


TOKEN_CASES = [
    pytest.param(lambda t: session_token(CANDIDATE), 200, None, id="fresh"),
    pytest.param(
        lambda t: session_token(CANDIDATE, issued_ago=12 * 3600 + 60),
        401,
        "token_expired",
        id="expired",
    ),
    pytest.param(
        lambda t: session_token(CANDIDATE, secret="another-secret"),
        401,
        "invalid_token",
        id="other-secret",
    ),
    pytest.param(lambda t: t[:-2], 401, "invalid_token", id="truncated"),
    pytest.param(lambda t: t + "x", 401, "invalid_token", id="extended"),
    pytest.param(lambda t: "forged", 401, "invalid_token", id="forged"),
    pytest.param(
        lambda t: forged_claims(["admin", PLAN_ID, "root", None]),
        401,
        "invalid_token",
        id="unknown-role",
    ),
    pytest.param(
        lambda t: forged_claims({"role": "candidate"}), 401, "invalid_token", id="not-a-list"
    ),
    pytest.param(lambda t: ADMIN_TOKEN, 403, "session_only", id="admin-token"),
]


async def test_me_checks_the_token(
    client: Client, admin: dict[str, str], subtests: Subtests
) -> None:
    await load_plan(client, admin)
    token = (await login(client, WEB))["token"]
    for name, (make_token, status, code) in cases(TOKEN_CASES):
        with subtests.test(name):
            response = await me(client, make_token(token))
            if code is None:
                assert response.status_code == 200
                assert (await response.get_json())["candidateId"] == "CAND202301"
            else:
                await error_of(response, status, code)


def test_a_verified_token_is_remembered_only_until_it_expires() -> None:
    tokens = Tokens("secret" * 6, "admin-token", ttl_seconds=1)
    token = tokens.issue(CANDIDATE)
    assert tokens.verify(token) == CANDIDATE
    assert tokens.verify(token) == CANDIDATE  # from the cache of verified tokens
    time.sleep(2.1)  # itsdangerous counts whole seconds
    with pytest.raises(ApiError) as refused:
        tokens.verify(token)
    assert refused.value.code == "token_expired"


async def test_a_token_whose_claims_were_edited_is_invalid(
    client: Client, admin: dict[str, str]
) -> None:
    await load_plan(client, admin)
    token = (await login(client, WEB))["token"]
    await error_of(await me(client, tampered(token)), 401, "invalid_token")


@pytest.mark.parametrize(
    ("header", "code"),
    [
        pytest.param(None, "missing_token", id="none"),
        pytest.param("Basic abc", "invalid_token", id="basic"),
        pytest.param("Bearer", "invalid_token", id="scheme-only"),
    ],
)
async def test_me_needs_a_bearer_token(
    client: Client, admin: dict[str, str], header: str | None, code: str
) -> None:
    await load_plan(client, admin)
    headers = {} if header is None else {"Authorization": header}
    for path in ("/api/v1/me",):
        await error_of(await client.get(path, headers=headers), 401, code)
    for path in ("/api/v1/me/start", "/api/v1/me/advance"):
        await error_of(await client.post(path, headers=headers), 401, code)


@pytest.mark.parametrize("path", ["/api/v1/me/start", "/api/v1/me/advance"])
async def test_only_candidates_start_or_advance(
    client: Client, admin: dict[str, str], path: str
) -> None:
    await load_plan(client, admin)
    await client.post(f"/api/v1/admin/plans/{PLAN_ID}/start", headers=admin)
    supervisor = (await login(client, SUPERVISOR))["token"]
    await error_of(await client.post(path, headers=bearer(supervisor)), 403, "candidates_only")
    await error_of(await client.post(path, headers=admin), 403, "session_only")


async def test_me_shows_the_callers_own_progress_only(
    client: Client, admin: dict[str, str]
) -> None:
    await load_plan(client, admin, plan=plan_with(("exam_plan.conduct_type", "개별시험")))
    await client.post(f"/api/v1/admin/plans/{PLAN_ID}/start", headers=admin)
    first = (await login(client, WEB))["token"]
    second = (await login(client, {**WEB, "candidateId": "CAND202302", "authCode": "AUTH1235"}))[
        "token"
    ]
    started = await client.post("/api/v1/me/start", headers=bearer(first))
    assert (await started.get_json())["currentStage"] == "STEP01"

    mine = await (await me(client, first)).get_json()
    theirs = await (await me(client, second)).get_json()
    assert (mine["candidateId"], mine["status"], mine["currentStage"]) == (
        "CAND202301",
        "in_progress",
        "STEP01",
    )
    assert (theirs["candidateId"], theirs["status"], theirs["currentStage"]) == (
        "CAND202302",
        "ready",
        None,
    )
    assert "CAND202302" not in json.dumps(mine) and "CAND202301" not in json.dumps(theirs)
