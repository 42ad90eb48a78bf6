"""The authorization matrix (issue 15): every route and socket frame × every kind of caller.

The expectations are authorization_table.py's; here they are checked on the real app, with a
real Redis and SQLite, and the table is held to what the server serves: a route or a frame
type without its row fails, and so does a row that names none.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import textwrap
from collections.abc import Mapping
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestAppProtocol as App
from quart.typing import TestClientProtocol as Client
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from examsync.frames import auth_frame
from examsync_server.access.principal import Principal
from examsync_server.api import save_route
from examsync_server.app import create_app
from examsync_server.config import Settings
from examsync_server.demo.sample import PLAN_ID
from examsync_server.runtime import Runtime
from examsync_server.sockets.server import SocketServer

from .answer_helpers import encoded, save_body
from .authorization_table import (
    ADMIN_PLAN,
    ADMITTED,
    ALLOWED,
    CANDIDATE,
    OTHER_PLAN,
    PRINCIPALS,
    SOCKET_ADMISSION,
    SOCKET_FRAMES,
    Answer,
    Row,
    http_rows,
)
from .conftest import ADMIN_TOKEN, load_plan, login, other_plan, session_token, socket_url
from .test_socket_saves import save_frame

SAVE = encoded(save_body({"Q001": ("1", 1)}))


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"web_dir": "auto"}  # the demo's pages are routes of the app too


def served_routes(quart_app: Quart) -> set[tuple[str, str]]:
    """(method, rule) of every route: Quart's url_map, and the save route in front of it."""
    rules = quart_app.url_map.iter_rules()
    found = {(m, r.rule) for r in rules for m in r.methods - {"HEAD", "OPTIONS"}}
    return found | {("POST", save_route.PATH)}


def frame_types() -> set[str]:
    """The frame types the socket server answers: the `kind == "…"` tests of `_reply`."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(SocketServer._reply)))  # noqa: SLF001
    return {
        node.comparators[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        and isinstance(node.left, ast.Name)
        and node.left.id == "kind"
        and isinstance(node.comparators[0], ast.Constant)
        and isinstance(node.comparators[0].value, str)
    }


def test_every_route_has_its_row_and_every_row_a_route(app: App) -> None:
    table = [row.key for row in http_rows(SAVE)]
    assert len(table) == len(set(table)), "a route has two rows"
    served = served_routes(app.app)  # type: ignore[attr-defined]
    assert served - set(table) == set(), "routes without a row in authorization_table.py"
    assert set(table) - served == set(), "rows naming no route"
    for row in http_rows(SAVE):
        assert set(row.expect) == set(PRINCIPALS), row.key


def test_a_route_added_without_a_row_is_caught(settings: Settings) -> None:
    """The check above reads the app, not a list: a new route shows up in it."""
    fresh = create_app(settings)

    async def backdoor() -> str:
        return "open"

    fresh.add_url_rule("/api/v1/backdoor", "backdoor", backdoor, methods=["GET"])
    assert served_routes(fresh) - {row.key for row in http_rows(SAVE)} == {
        ("GET", "/api/v1/backdoor")
    }


def test_every_socket_frame_type_has_its_row_and_every_row_a_type() -> None:
    assert frame_types() == set(SOCKET_FRAMES)
    for kind, by_principal in SOCKET_FRAMES.items():
        admitted = {p for p, a in SOCKET_ADMISSION.items() if a == ADMITTED}
        assert set(by_principal) == admitted, kind


def third_plan() -> dict[str, Any]:
    """A plan for the admin's changes, its ids unlike those of the other two."""
    plan = other_plan(ADMIN_PLAN)
    text = json.dumps(plan).replace("OTHER", "ADMINC").replace("GROUP01B", "GROUP01C")
    plan = json.loads(text.replace("GROUP02B", "GROUP02C").replace("SUP202301B", "SUP202301C"))
    plan["supervisors"] = [
        {**s, "supervisor_id": s["supervisor_id"].replace("B", "C")} for s in plan["supervisors"]
    ]
    return plan


async def callers(client: Client, admin: dict[str, str], settings: Settings) -> dict[str, Any]:
    """Each principal's Authorization header (none: no header), the plans in place."""
    await load_plan(client, admin)
    started = await client.post(f"/api/v1/admin/plans/{PLAN_ID}/start", headers=admin)
    assert started.status_code == 200
    await load_plan(client, admin, other_plan(OTHER_PLAN), OTHER_PLAN)
    await load_plan(client, admin, third_plan(), ADMIN_PLAN)

    async def token(body: dict[str, str]) -> str:
        return str((await login(client, body))["token"])

    revoked = await token({"planId": PLAN_ID, "candidateId": "CAND202303", "authCode": "AUTH1236"})
    response = await client.post(
        f"/api/v1/admin/plans/{PLAN_ID}/sessions/revoke",
        json={"candidates": ["CAND202303"]},
        headers=admin,
    )
    assert response.status_code == 200
    me = Principal("candidate", PLAN_ID, CANDIDATE, "GROUP01")
    tokens = {
        "forged": session_token(me, secret="not-the-server-secret"),
        "expired": session_token(me, issued_ago=settings.access.session_ttl_seconds + 60),
        "revoked": revoked,
        "admin": ADMIN_TOKEN,
        "candidate": await token(
            {"planId": PLAN_ID, "candidateId": CANDIDATE, "authCode": "AUTH1234"}
        ),
        "candidate_other_plan": await token(
            {"planId": OTHER_PLAN, "candidateId": "OTHER0", "authCode": "AUTH1234"}
        ),
        "supervisor": await token(
            {"planId": PLAN_ID, "supervisorId": "SUP202301", "authCode": "SUPAUTH01"}
        ),
        "supervisor_other_group": await token(
            {"planId": PLAN_ID, "supervisorId": "SUP202302", "authCode": "SUPAUTH02"}
        ),
        "supervisor_other_plan": await token(
            {"planId": OTHER_PLAN, "supervisorId": "SUP202301B", "authCode": "SUPAUTH01"}
        ),
    }
    return {"none": None, **tokens}


def misjudged(status: int, body: bytes, expected: Answer) -> str | None:
    """Why an answer is not the expected one; None when it is."""
    try:
        parsed = json.loads(body)
        code = parsed["error"]["code"] if isinstance(parsed, dict) and "error" in parsed else None
    except (ValueError, KeyError, TypeError):
        code = None
    if expected == ALLOWED:
        if status in (401, 403) or status >= 500:
            return f"got {status} {code}, expected to get past authorization"
        return None
    if status != expected.status or (expected.code is not None and code != expected.code):
        return f"got {status} {code}, expected {expected.status} {expected.code}"
    return None


async def call(client: Client, row: Row, token: str | None) -> tuple[int, bytes]:
    headers = dict(row.headers)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = third_plan() if row.json_body == "the sample plan for ADMIN_PLAN" else row.json_body
    if body is not None:
        response = await client.open(row.path, method=row.method, json=body, headers=headers)
    else:
        response = await client.open(
            row.path, method=row.method, data=row.body or b"", headers=headers
        )
    return response.status_code, await response.get_data()


async def test_every_route_answers_every_caller_as_the_table_says(
    client: Client, admin: dict[str, str], settings: Settings
) -> None:
    tokens = await callers(client, admin, settings)
    wrong = []
    for row in http_rows(SAVE):
        for principal in PRINCIPALS:
            status, body = await call(client, row, tokens[principal])
            why = misjudged(status, body, row.expect[principal])
            if why is not None:
                wrong.append(f"{row.method} {row.path} as {principal}: {why}")
    assert wrong == []


async def reply_to(ws: ClientConnection, kind: str, n: int) -> str | None:
    """The answer to one frame of `kind`: a frame type, `error:code`, or None for none (what
    came before the pong of a ping sent right after it)."""
    if kind == "save":
        await ws.send(save_frame(f"s{n}", SAVE))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if frame.get("id") == f"s{n}":
                return _named(frame)
    sent: dict[str, Any] = {"type": kind}
    if kind == "sync_state":
        sent.update(pending=1, oldestPendingAge=2.0)
    await ws.send(json.dumps(sent))
    await ws.send(json.dumps({"type": "ping", "ts": f"marker-{n}"}))
    seen: list[str] = []
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if frame["type"] == "pong" and frame.get("ts") == f"marker-{n}":
            return seen[0] if seen else None
        # Not answers: the server's own heartbeat, and a supervisor's news of examinees (the
        # sockets of the callers before come and go).
        if frame["type"] != "ping" and not frame["type"].startswith("examinee_"):
            seen.append(_named(frame))


def _named(frame: Mapping[str, Any]) -> str:
    if frame["type"] == "error":
        return f"error:{frame['error']['code']}"
    return str(frame["type"])


async def test_every_socket_frame_answers_every_caller_as_the_table_says(
    client: Client, admin: dict[str, str], settings: Settings, runtime: Runtime
) -> None:
    tokens = await callers(client, admin, settings)
    url = socket_url(runtime)
    wrong = []
    for principal in PRINCIPALS:
        token = tokens[principal]
        expected = SOCKET_ADMISSION[principal]
        try:
            async with connect(url) as ws:
                # The first frame authenticates; "none" sends one without a token.
                await ws.send(json.dumps({"type": "auth"}) if token is None else auth_frame(token))
                first = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if first["type"] == "error":
                    why = misjudged(first["status"], json.dumps(first).encode(), expected)
                    if expected == ADMITTED or why is not None:
                        wrong.append(f"socket as {principal}: {why or 'refused'}")
                    continue
                if expected != ADMITTED:
                    wrong.append(f"socket as {principal}: admitted, expected {expected}")
                    continue
                assert first["type"] == "welcome"
                for n, (kind, answers) in enumerate(SOCKET_FRAMES.items()):
                    got = await reply_to(ws, kind, n)
                    if got != answers[principal]:
                        wrong.append(
                            f"{kind} frame as {principal}: {got}, not {answers[principal]}"
                        )
                unknown = await reply_to(ws, "no_such_type", 99)
                if unknown != "error:unknown_type":
                    wrong.append(f"an unknown frame as {principal}: {unknown}")
        except InvalidStatus as exc:
            why = misjudged(exc.response.status_code, exc.response.body or b"", expected)
            if expected == ADMITTED or why is not None:
                wrong.append(f"socket as {principal}: {why or 'refused'}")
    assert wrong == []
