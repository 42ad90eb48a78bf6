"""Socket authentication (issue 15, defect 7): the session token travels in the socket's first
frame, never in its URL; the old `?token=` query still works, deprecated, for older SDKs
(docs/protocol.md, "Authentication")."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from examsync.frames import auth_frame
from examsync_server.access.tokens import Principal
from examsync_server.demo.sample import PLAN_ID
from examsync_server.runtime import Runtime
from socket_peer import peer

from .conftest import ADMIN_TOKEN, load_plan, login, session_token, socket_url

CANDIDATE = {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"}
SUPERVISOR = {"planId": PLAN_ID, "supervisorId": "SUP202301", "authCode": "SUPAUTH01"}


def seen_paths(runtime: Runtime) -> list[str]:
    """The request path of every socket the server holds, as it (and any proxy) saw it."""
    assert runtime.sockets is not None
    # The admitted sockets' connections (websockets' Server.connections is newer than 13.0).
    return sorted(c.request.path for c in runtime.sockets._sockets if c.request)


async def refusal(ws: ClientConnection) -> tuple[dict[str, Any], int | None, str | None]:
    """The error frame a refused socket gets, then its close code and reason."""
    frame = json.loads(await asyncio.wait_for(ws.recv(), 3))
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 3)
    return frame, ws.protocol.close_code, ws.protocol.close_reason


async def test_the_token_in_the_first_frame_admits_and_the_url_carries_no_secret(
    client: Client, admin: dict[str, str], runtime: Runtime
) -> None:
    await load_plan(client, admin)
    cand, sup = (
        (await login(client, CANDIDATE))["token"],
        (await login(client, SUPERVISOR))["token"],
    )
    async with peer(socket_url(runtime), cand) as c, peer(socket_url(runtime), sup) as s:
        assert seen_paths(runtime) == ["/ws", "/ws"]
        # Who may do what is as before: a candidate is offered saves, a supervisor not.
        assert (c.welcome["role"], c.welcome["features"]) == ("candidate", ["save", "sync_state"])
        assert (s.welcome["role"], s.welcome["features"]) == ("supervisor", [])
        connected = await s.next_of("examinee_connected")
        assert connected["examineeId"] == "CAND202301"
        await c.ws.send(json.dumps({"type": "ping", "ts": 5}))
        assert (await c.next_of("pong"))["ts"] == 5


FIRST_FRAMES = [
    pytest.param(lambda t: auth_frame("forged"), 401, "invalid_token", id="forged"),
    pytest.param(
        lambda t: auth_frame(
            session_token(Principal("candidate", PLAN_ID, "CAND202301", None), issued_ago=13 * 3600)
        ),
        401,
        "token_expired",
        id="expired",
    ),
    pytest.param(lambda t: auth_frame(ADMIN_TOKEN), 403, "session_only", id="admin-token"),
    pytest.param(lambda t: json.dumps({"type": "auth"}), 401, "missing_token", id="no-token"),
    pytest.param(
        lambda t: json.dumps({"type": "auth", "token": t, "lastPosition": 5}),
        401,
        "missing_token",
        id="bad-position",
    ),
    pytest.param(lambda t: json.dumps({"type": "ping", "ts": 1}), 401, "missing_token", id="ping"),
    pytest.param(lambda t: "not json", 401, "missing_token", id="not-json"),
    pytest.param(lambda t: f"?token={t}", 401, "missing_token", id="token-as-text"),
]


@pytest.mark.parametrize(("first", "status", "code"), FIRST_FRAMES)
async def test_a_wrong_first_frame_is_refused_with_the_http_code_and_closed(
    client: Client,
    admin: dict[str, str],
    runtime: Runtime,
    first: Any,
    status: int,
    code: str,
) -> None:
    await load_plan(client, admin)
    token = (await login(client, CANDIDATE))["token"]
    async with peer(socket_url(runtime), (await login(client, SUPERVISOR))["token"]) as watcher:
        async with connect(socket_url(runtime), ping_interval=None) as ws:
            await ws.send(first(token))
            frame, close_code, reason = await refusal(ws)
        assert frame["type"] == "error" and frame["status"] == status
        assert frame["error"]["code"] == code and frame["error"]["message"]
        assert (close_code, reason) == (4000 + status, code)
        await asyncio.sleep(0.2)
        assert not watcher.of("examinee_connected")  # never admitted, never CONNECTED


async def test_a_socket_that_sends_nothing_is_closed_after_the_auth_timeout(
    client: Client, admin: dict[str, str], runtime: Runtime
) -> None:
    await load_plan(client, admin)
    assert runtime.sockets is not None
    runtime.sockets.auth_timeout = 0.3
    loop = asyncio.get_running_loop()
    async with connect(socket_url(runtime), ping_interval=None) as ws:
        started = loop.time()
        frame, close_code, reason = await refusal(ws)
        took = loop.time() - started
    assert frame["status"] == 408 and frame["error"]["code"] == "auth_timeout"
    assert (close_code, reason) == (4408, "auth_timeout")
    assert 0.25 <= took < 2, took
    # A late auth frame is too late: the socket is gone.
    async with connect(socket_url(runtime), ping_interval=None) as ws:
        await asyncio.sleep(0.5)
        with pytest.raises(ConnectionClosed):
            await ws.send(auth_frame((await login(client, CANDIDATE))["token"]))
            await asyncio.wait_for(ws.recv(), 3)
            await asyncio.wait_for(ws.recv(), 3)


async def test_the_token_in_the_url_still_works_deprecated_and_no_log_holds_a_token(
    client: Client, admin: dict[str, str], runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    await load_plan(client, admin)
    cand, sup = (
        (await login(client, CANDIDATE))["token"],
        (await login(client, SUPERVISOR))["token"],
    )
    caplog.set_level(logging.DEBUG)
    async with peer(socket_url(runtime), sup, token_in_url=True) as s:
        async with peer(socket_url(runtime), cand, token_in_url=True) as c:
            assert c.welcome["role"] == "candidate" and "save" in c.welcome["features"]
            assert (await s.next_of("examinee_connected"))["examineeId"] == "CAND202301"
        async with peer(socket_url(runtime), cand) as c:  # first frame: no deprecation line
            await s.next_of("examinee_connected", after=1)
        async with connect(socket_url(runtime), ping_interval=None) as ws:
            await ws.send(auth_frame(cand + "x"))
            await refusal(ws)
    deprecated = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert len(deprecated) == 2, deprecated  # once per connection that used it
    assert "supervisor SUP202301" in deprecated[0] and "candidate CAND202301" in deprecated[1]
    assert all(r.levelno == logging.WARNING for r in caplog.records if "deprecated" in r.message)
    # The server's records (this test's own client logs its request line at DEBUG).
    server_side = [r for r in caplog.records if not r.name.startswith("websockets.client")]
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in server_side)
    for secret in (cand, sup, cand + "x"):
        assert secret not in logged
