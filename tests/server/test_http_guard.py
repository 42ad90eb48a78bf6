"""Security headers on every kind of response, and each route's body limit applied before the
body is read (issue 15, defects 5 and 7); raw-socket behaviour is in
tests/integration/test_http_port.py."""

from __future__ import annotations

from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from examsync_server.api.http_guard import CONTENT_SECURITY_POLICY
from examsync_server.media.captures import MAX_CAPTURE_BYTES

from .conftest import error_of

SECURITY = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def assert_secured(response: Any) -> None:
    for name, value in SECURITY.items():
        assert response.headers.get(name) == value, (name, dict(response.headers))
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY


async def test_every_kind_of_response_carries_the_security_headers(
    client: Client, admin: dict[str, str]
) -> None:
    responses = {
        "ok": await client.get("/healthz"),
        "document": await client.get("/api/v1/openapi.json"),
        "api error": await client.get("/api/v1/admin/plans/P1", headers=admin),
        "unknown path": await client.get("/nothing-here"),
        "save route": await client.post("/api/v1/answers", json={}),
        "refused body": await client.post(
            "/api/v1/sessions", data=b"x" * 5000, headers={"Content-Type": "application/json"}
        ),
    }
    assert responses["save route"].status_code == 401
    for name, response in responses.items():
        assert_secured(response), name


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "no-length"])
async def test_a_login_over_its_limit_is_413_and_closes_the_connection(
    client: Client, declared: bool
) -> None:
    body = b" " * 4097
    headers = {"Content-Type": "application/json"}
    if declared:
        headers["Content-Length"] = str(len(body))
    response = await client.post("/api/v1/sessions", data=body, headers=headers)
    assert await error_of(response, 413, "payload_too_large") == {"limit": 4096}
    assert response.headers["Connection"] == "close"


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("/api/v1/me/start", 64 * 1024),  # a route without a limit of its own
        ("/api/v1/admin/plans/P1/prepare", 64 * 1024),
        ("/api/v1/captures", MAX_CAPTURE_BYTES),  # its own: larger than the small routes'
    ],
)
async def test_each_route_has_its_own_limit(client: Client, path: str, limit: int) -> None:
    # refused before the token is looked at: the body was never going to be read (Quart's test
    # client sends no Content-Length of its own; a real client does)
    body = b" " * (limit + 1)
    response = await client.post(path, data=body, headers={"Content-Length": str(len(body))})
    assert await error_of(response, 413, "payload_too_large") == {"limit": limit}
    assert response.headers["Connection"] == "close"
