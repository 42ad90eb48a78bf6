"""HttpTransport over httpx.MockTransport and SocketTransport against a local websockets server."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest
from cpython_fakes import (
    AUTH_CODE,
    CANDIDATE,
    EXAM,
    KEY,
    PACKAGE,
    PLAN,
    FakeApi,
    error,
    raw_public,
    socket_server,
)
from websockets.asyncio.server import ServerConnection, serve

from examsync.cpython.transport import HttpTransport, SocketTransport
from examsync.engine import Engine, EngineConfig
from examsync.exceptions import (
    AuthenticationError,
    ChecksumMismatch,
    RateLimitedError,
    RemoteProtocolError,
    ServerError,
    TransportError,
)
from examsync.frames import Auth
from examsync.storage import MemoryStorage


def transport_for(api: FakeApi) -> HttpTransport:
    return HttpTransport("http://exam.test/", client=httpx.AsyncClient(transport=api.transport()))


def transport_answering(response: httpx.Response | Exception) -> HttpTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if isinstance(response, Exception):
            raise response
        return response

    return HttpTransport(
        "http://exam.test", client=httpx.AsyncClient(transport=httpx.MockTransport(handle))
    )


async def test_web_and_key_login_keep_the_token() -> None:
    api = FakeApi()
    http = transport_for(api)
    session = await http.login(PLAN, candidate_id=CANDIDATE, auth_code=AUTH_CODE)
    assert (session.token, session.candidate_id, session.plan_id) == ("tok-1", CANDIDATE, PLAN)
    assert session.raw["role"] == "candidate" and http.token == "tok-1"
    assert (await http.login(PLAN, key=KEY)).candidate_id == CANDIDATE
    with pytest.raises(AuthenticationError) as info:
        await http.login(PLAN, key="wrong")
    assert info.value.code == "invalid_credentials" and info.value.status == 401
    with pytest.raises(ValueError):
        await http.login(PLAN, candidate_id=CANDIDATE)


async def test_save_and_restore_round_trip_through_the_engine() -> None:
    api = FakeApi()
    http = transport_for(api)
    await http.login(PLAN, key=KEY)
    engine = Engine(EngineConfig(PLAN, EXAM, CANDIDATE), MemoryStorage(), lambda: 0.5)
    engine.set_answer("Q1", "a", 1000.0)
    request = engine.next_request(1000.0)
    assert request is not None
    status, body = await http.save(request.body)
    engine.receive_save_response(request.batch_id, status, body, 1001.0)
    assert not engine.outbox and engine.receipts["Q1"].payload.version == 1
    report = engine.receive_restore(await http.restore(EXAM), 1002.0)
    assert report.unconfirmed == () and api.answers == {"Q1": ("a", 1)}
    keys = await http.keys()
    assert keys == {"k1": raw_public(api.key)}


@pytest.mark.parametrize(
    ("response", "expected", "code"),
    [
        (error(401, "invalid_token"), AuthenticationError, "invalid_token"),
        (error(403, "forbidden"), AuthenticationError, "forbidden"),
        (error(429, "slow_down"), RateLimitedError, "slow_down"),
        (error(503, "redis_unavailable"), ServerError, "redis_unavailable"),
        (httpx.Response(502, text="<html>bad gateway</html>"), ServerError, "http_502"),
    ],
)
async def test_error_bodies_map_to_typed_errors(
    response: httpx.Response, expected: type[ServerError], code: str
) -> None:
    http = transport_answering(response)
    with pytest.raises(expected) as info:
        await http.restore(EXAM)
    assert info.value.code == code and info.value.status == response.status_code


async def test_httpx_errors_become_transport_errors_with_their_cause() -> None:
    refused = httpx.ConnectError("refused")
    with pytest.raises(TransportError) as info:
        await transport_answering(refused).save(b"{}")
    assert info.value.__cause__ is refused and not info.value.timeout
    with pytest.raises(TransportError) as timed_out:
        await transport_answering(httpx.ReadTimeout("slow")).keys()
    assert timed_out.value.timeout


async def test_malformed_bodies_are_protocol_errors() -> None:
    with pytest.raises(RemoteProtocolError):
        await transport_answering(httpx.Response(200, text="{nope")).keys()
    with pytest.raises(RemoteProtocolError):
        await transport_answering(httpx.Response(200, json={"token": 5})).login(PLAN, key=KEY)


async def test_the_package_is_verified_cached_and_usable_offline(tmp_path: Path) -> None:
    api = FakeApi()
    http = transport_for(api)
    await http.login(PLAN, key=KEY)
    first = await http.package(PLAN, tmp_path)
    assert first.path.read_bytes() == PACKAGE and not first.from_cache
    assert first.sha256 == hashlib.sha256(PACKAGE).hexdigest()
    again = await http.package(PLAN, tmp_path)
    assert again.from_cache and api.package_requests[-1].headers["If-None-Match"] == (
        f'"{first.sha256}"'
    )
    api.down = True
    offline = await http.package(PLAN, tmp_path)
    assert offline.from_cache and offline.path.read_bytes() == PACKAGE


async def test_a_package_that_does_not_match_its_etag_is_refused(tmp_path: Path) -> None:
    api = FakeApi(package_etag="0" * 64)
    http = transport_for(api)
    await http.login(PLAN, key=KEY)
    with pytest.raises(ChecksumMismatch):
        await http.package(PLAN, tmp_path)
    assert not (tmp_path / "package.zip").exists()
    api.down = True
    with pytest.raises(TransportError):  # offline with nothing cached
        await http.package(PLAN, tmp_path)


async def test_a_corrupted_cache_is_not_used(tmp_path: Path) -> None:
    api = FakeApi()
    http = transport_for(api)
    await http.login(PLAN, key=KEY)
    await http.package(PLAN, tmp_path)
    (tmp_path / "package.zip").write_bytes(b"garbage")
    fresh = await http.package(PLAN, tmp_path)  # no If-None-Match: downloaded again
    assert not fresh.from_cache and fresh.path.read_bytes() == PACKAGE


async def test_the_token_goes_in_the_first_frame_never_in_the_url() -> None:
    api = FakeApi()
    async with socket_server(api) as server:
        first = await SocketTransport.connect(server.url, "tok-1", open_timeout=2)
        again = await SocketTransport.connect(
            server.url, "tok-1", last_position="7-0", open_timeout=2
        )
        await first.close()
        await again.close()
    assert server.paths == ["/ws", "/ws"]  # what the server (and any proxy) saw
    assert server.auths == [Auth("tok-1"), Auth("tok-1", "7-0")]


async def test_a_socket_that_is_never_welcomed_times_out_and_is_dropped() -> None:
    answered: list[str | bytes] = []

    async def mute(conn: ServerConnection) -> None:
        answered.append(await conn.recv())  # the auth frame, left unanswered
        await conn.wait_closed()

    async with serve(mute, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        with pytest.raises(TransportError) as info:
            await SocketTransport.connect(f"ws://127.0.0.1:{port}/ws", "tok-1", open_timeout=0.5)
    assert info.value.timeout and json.loads(answered[0])["type"] == "auth"


async def test_socket_transport_talks_to_a_local_server() -> None:
    api = FakeApi()
    async with socket_server(api) as server:
        socket = await SocketTransport.connect(server.url, "tok-1", open_timeout=2)
        welcome = json.loads(await socket.recv())
        assert welcome["type"] == "welcome" and welcome["features"] == ["save"]
        await socket.send(json.dumps({"type": "ping", "ts": 7}))
        assert json.loads(await socket.recv()) == {"type": "pong", "ts": 7}
        await socket.close()
        with pytest.raises(TransportError):
            await socket.recv()


async def test_socket_handshake_refusals_and_dead_ports_are_typed() -> None:
    api = FakeApi()
    async with socket_server(api) as server:
        with pytest.raises(AuthenticationError):
            await SocketTransport.connect(server.url, "wrong", open_timeout=2)
        server.accepting = False
        with pytest.raises(ServerError) as info:
            await SocketTransport.connect(server.url, "tok-1", open_timeout=2)
        assert info.value.status == 503 and info.value.retryable
        assert info.value.retry_after is None
        server.retry_after = 3  # a reconnect storm: the server says when to come back
        with pytest.raises(ServerError) as info:
            await SocketTransport.connect(server.url, "tok-1", open_timeout=2)
        assert info.value.retry_after == 3.0
        url = server.url
    with pytest.raises(TransportError):
        await SocketTransport.connect(url, "tok-1", open_timeout=2)


async def test_nothing_is_read_after_our_own_close_not_even_an_unread_welcome() -> None:
    async with socket_server(FakeApi()) as server:
        closed = await SocketTransport.connect(server.url, "tok-1", open_timeout=2)
        await closed.close()
        with pytest.raises(TransportError):
            await closed.recv()
        aborted = await SocketTransport.connect(server.url, "tok-1", open_timeout=2)
        aborted.abort()
        with pytest.raises(TransportError):
            await aborted.recv()
