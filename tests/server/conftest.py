"""An in-process server per test: the real app, a real Redis, a real SQLite file."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from itsdangerous.timed import TimestampSigner
from quart.typing import TestAppProtocol
from quart.typing import TestClientProtocol as Client

from examsync_server.access.tokens import Principal, Tokens
from examsync_server.app import RUNTIME_KEY, create_app
from examsync_server.config import Settings
from examsync_server.demo.sample import PLAN_ID, sample_package, sample_plan
from examsync_server.presence.sweeper import LOCK as SWEEPER_LOCK
from examsync_server.runtime import Runtime
from examsync_server.store import keys

from .documented import observe_statuses

ADMIN_TOKEN = "test-admin-token-0123456789"
SECRET_KEY = "test-secret-key"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Settings a test changes, by parametrizing this fixture: small limits, say."""
    return {}


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, settings_overrides: dict[str, Any]) -> Settings:
    return (
        Settings()
        .with_changes(
            data_dir=tmp_path / "data",
            redis_url=redis_url,
            admin_token=ADMIN_TOKEN,
            secret_key=SECRET_KEY,
            socket_port=0,
            stage_tick_seconds=0.05,
        )
        .with_changes(**settings_overrides)
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[TestAppProtocol]:
    """The app, failing the test if a route answered a status the OpenAPI document lacks."""
    quart_app = create_app(settings)
    statuses = observe_statuses(quart_app)
    async with quart_app.test_app() as test_app:
        yield test_app
    missing = statuses.undocumented()
    assert not missing, f"statuses missing from api/openapi.py: {missing}"


@pytest.fixture
def runtime(app: TestAppProtocol) -> Runtime:
    found: Runtime = app.app.extensions[RUNTIME_KEY]  # type: ignore[attr-defined]
    return found


@pytest.fixture
def client(app: TestAppProtocol) -> Client:
    return app.test_client()


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def db(settings: Settings) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 view of the server's file, to check what was really committed."""
    conn = sqlite3.connect(settings.storage.sqlite_path)
    conn.row_factory = sqlite3.Row
    yield conn
    conn.close()


def package_headers(data: bytes, admin: dict[str, str]) -> dict[str, str]:
    return {**admin, "X-Content-SHA256": hashlib.sha256(data).hexdigest()}


async def load_plan(
    client: Client,
    admin: dict[str, str],
    plan: dict[str, Any] | None = None,
    plan_id: str = PLAN_ID,
    package: bytes | None = None,
    prepare: bool = True,
) -> dict[str, Any]:
    """Import, upload the package and (by default) prepare: the seed 000 sequence."""
    plan = plan or sample_plan()
    response = await client.put(f"/api/v1/admin/plans/{plan_id}", json=plan, headers=admin)
    assert response.status_code in (200, 201), await response.get_json()
    data = package or sample_package()
    response = await client.put(
        f"/api/v1/admin/plans/{plan_id}/package", data=data, headers=package_headers(data, admin)
    )
    assert response.status_code == 200, await response.get_json()
    if prepare:
        response = await client.post(f"/api/v1/admin/plans/{plan_id}/prepare", headers=admin)
        assert response.status_code == 200, await response.get_json()
    return plan


def socket_url(runtime: Runtime) -> str:
    """The in-process socket server's URL (add `?token=`)."""
    assert runtime.sockets is not None
    return f"ws://127.0.0.1:{runtime.sockets.port}/ws"


async def login(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/api/v1/sessions", json=body)
    payload: dict[str, Any] = await response.get_json()
    assert response.status_code == 201, payload
    return payload


def other_plan(plan_id: str = "PLAN202402") -> dict[str, Any]:
    """A second plan whose candidate, supervisor and group ids differ from the sample's."""
    plan = sample_plan(candidates=2)
    plan["exam_plan"]["plan_id"] = plan_id
    for i, cand in enumerate(plan["candidates"]):
        cand["candidate_id"] = f"OTHER{i}"
        cand["access_key"] = f"KEY-OTHER{i}"
    plan["groups"] = [{**g, "group_id": g["group_id"] + "B"} for g in plan["groups"]]
    for person in [*plan["candidates"], *plan["supervisors"]]:
        person["group_id"] = person["group_id"] + "B"
    plan["supervisors"] = [
        {**s, "supervisor_id": s["supervisor_id"] + "B"} for s in plan["supervisors"]
    ]
    return plan


MISSING = object()


def plan_with(*changes: tuple[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sample plan with changes at dotted paths (`candidates.0.group_id`); MISSING deletes."""
    plan = copy.deepcopy(base) if base is not None else sample_plan()
    for path, value in changes:
        *parents, last = path.split(".")
        target: Any = plan
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        key: Any = int(last) if isinstance(target, list) else last
        if value is MISSING:
            del target[key]
        else:
            target[key] = value
    return plan


def cases(params: list[Any]) -> list[tuple[str, tuple[Any, ...]]]:
    """(id, values) of `pytest.param`s, for a test that runs each as a subtest."""
    return [(str(p.id), tuple(p.values)) for p in params]


async def error_of(response: Any, status: int, code: str) -> dict[str, Any]:
    """The error body of the contract (DESIGN §4), checked: status, exact code, shape."""
    body = await response.get_json()
    assert response.status_code == status, body
    assert response.content_type == "application/json", response.content_type
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["details"], dict), error
    details: dict[str, Any] = error["details"]
    return details


def problem_fields(details: dict[str, Any]) -> list[str]:
    """The fields a 422 `invalid_request` names in `details.problems`."""
    problems = details["problems"]
    assert problems and all(set(p) == {"field", "problem"} for p in problems), problems
    return [p["field"] for p in problems]


def _is_heartbeat(key: str) -> bool:
    """Keys the running processes keep alive with a TTL (a socket server's presence, the
    sweeper's lease): they come and go with the clock, not with requests."""
    return key == SWEEPER_LOCK or key.startswith(keys.socket_node(""))


def _redis_value(redis: Any, key: str) -> Any:
    kind = redis.type(key)
    if kind == "string":
        return kind, redis.get(key)
    if kind == "hash":
        return kind, redis.hgetall(key)
    if kind == "list":
        return kind, redis.lrange(key, 0, -1)
    if kind == "set":
        return kind, sorted(redis.smembers(key))
    if kind == "zset":
        return kind, redis.zrange(key, 0, -1, withscores=True)
    if kind == "stream":
        groups = [
            (g["name"], g["last-delivered-id"], g["pending"]) for g in redis.xinfo_groups(key)
        ]
        return kind, redis.xrange(key), groups
    raise AssertionError(f"unexpected Redis type {kind} of {key}")


@pytest.fixture
def state(
    client: Client, db: sqlite3.Connection, sync_redis: Any, settings: Settings
) -> Callable[[], dict[str, Any]]:
    """A function returning everything the server stores: every SQLite table's rows, every
    Redis key with its value, every file in the file store. Equal before and after a refused
    request means the request changed nothing."""

    def dump() -> dict[str, Any]:
        tables = [
            r[0]
            for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        ]
        files = settings.storage.files_dir
        return {
            "sqlite": {t: [tuple(r) for r in db.execute(f'SELECT * FROM "{t}"')] for t in tables},
            "redis": {
                k: _redis_value(sync_redis, k)
                for k in sorted(sync_redis.keys("*"))
                if not _is_heartbeat(k)
            },
            "files": sorted(
                (str(p.relative_to(files)), p.stat().st_size)
                for p in (files.rglob("*") if files.exists() else [])
                if p.is_file()
            ),
        }

    return dump


def session_token(principal: Principal, *, secret: str = SECRET_KEY, issued_ago: int = 0) -> str:
    """A session token made outside the server: signed with `secret`, `issued_ago` seconds old."""
    tokens = Tokens(secret, ADMIN_TOKEN, Settings().access.session_ttl_seconds)
    issued_at = int(time.time()) - issued_ago
    with mock.patch.object(TimestampSigner, "get_timestamp", return_value=issued_at):
        return tokens.issue(principal)


async def eventually(check: Any, timeout: float = 5.0) -> None:
    """Wait until `check()` is true, polling; fail the test after `timeout` seconds."""
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")
