"""An in-process server per test: the real app, a real Redis, a real SQLite file."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from quart.typing import TestAppProtocol
from quart.typing import TestClientProtocol as Client

from examsync_server.app import RUNTIME_KEY, create_app
from examsync_server.config import Settings
from examsync_server.demo.sample import PLAN_ID, sample_package, sample_plan
from examsync_server.runtime import Runtime

ADMIN_TOKEN = "test-admin-token-0123456789"


@pytest.fixture
def settings(tmp_path: Path, redis_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        redis_url=redis_url,
        admin_token=ADMIN_TOKEN,
        secret_key="test-secret-key",
        socket_port=0,
        stage_tick_seconds=0.05,
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[TestAppProtocol]:
    quart_app = create_app(settings)
    async with quart_app.test_app() as test_app:
        yield test_app


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
    conn = sqlite3.connect(settings.sqlite_path)
    conn.row_factory = sqlite3.Row
    yield conn
    conn.close()


def package_headers(data: bytes, admin: dict[str, str]) -> dict[str, str]:
    return {**admin, "X-Content-SHA256": hashlib.sha256(data).hexdigest()}


async def load_plan(client: Client, admin: dict[str, str],
                    plan: dict[str, Any] | None = None, plan_id: str = PLAN_ID,
                    package: bytes | None = None, prepare: bool = True) -> dict[str, Any]:
    """Import, upload the package and (by default) prepare: the seed 000 sequence."""
    plan = plan or sample_plan()
    response = await client.put(f"/api/v1/admin/plans/{plan_id}", json=plan, headers=admin)
    assert response.status_code in (200, 201), await response.get_json()
    data = package or sample_package()
    response = await client.put(f"/api/v1/admin/plans/{plan_id}/package", data=data,
                                headers=package_headers(data, admin))
    assert response.status_code == 200, await response.get_json()
    if prepare:
        response = await client.post(f"/api/v1/admin/plans/{plan_id}/prepare", headers=admin)
        assert response.status_code == 200, await response.get_json()
    return plan


async def login(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/api/v1/sessions", json=body)
    payload: dict[str, Any] = await response.get_json()
    assert response.status_code == 201, payload
    return payload
