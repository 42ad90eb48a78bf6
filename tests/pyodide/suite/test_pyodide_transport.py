"""FetchTransport and WebSocketTransport against a real local server (tests/pyodide/host.mjs)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from examsync.exceptions import (
    AuthenticationError,
    RemoteProtocolError,
    ServerError,
    TransportError,
)
from examsync.pyodide import FetchTransport, WebSocketTransport


async def test_fetch_sends_method_headers_and_bytes_and_reads_the_answer(host: Any) -> None:
    http = FetchTransport(host.httpUrl)
    http.token = "tok-1"
    response = await http._request("POST", "/echo", body="정답 ①".encode())
    assert response.status == 201 and response.headers["x-echo"] == "yes"
    echoed = json.loads(response.content)
    assert echoed["method"] == "POST" and echoed["body"] == "정답 ①"
    assert echoed["headers"]["authorization"] == "Bearer tok-1"
    assert echoed["headers"]["content-type"] == "application/json"


async def test_fetch_error_answers_become_typed_server_errors(host: Any) -> None:
    http = FetchTransport(host.httpUrl)
    with pytest.raises(ServerError) as info:
        await http._json("GET", "/status/503")
    assert info.value.status == 503 and info.value.code == "refused" and info.value.retryable
    with pytest.raises(RemoteProtocolError):
        await http.keys()  # the echo is not a key list


async def test_fetch_failures_and_timeouts_become_transport_errors(host: Any) -> None:
    with pytest.raises(TransportError) as refused:
        await FetchTransport("http://127.0.0.1:9").save(b"{}")
    assert not refused.value.timeout and refused.value.__cause__ is not None
    with pytest.raises(TransportError) as slow:
        await FetchTransport(host.httpUrl, timeout=0.2)._request("GET", "/slow")
    assert slow.value.timeout


async def test_the_websocket_carries_text_and_bytes_and_says_when_closed(host: Any) -> None:
    socket = await WebSocketTransport.connect(host.wsUrl, "a b", open_timeout=2)
    welcome = json.loads(await socket.recv())  # read by connect(), handed on first
    # The token went in the first frame; the URL the server saw carried nothing.
    assert welcome["query"] == "" and welcome["auth"] == {"type": "auth", "token": "a b"}
    await socket.send('{"type":"ping"}')
    assert await socket.recv() == '{"type":"ping"}'
    await socket.send("binary")
    assert await socket.recv() == b"\x00\x01\x02\xff"
    await socket.send("close")  # the server closes with 4001
    with pytest.raises(TransportError, match="4001"):
        await asyncio.wait_for(socket.recv(), 2)
    with pytest.raises(TransportError):  # and keeps saying so
        await socket.recv()
    with pytest.raises(TransportError):
        await socket.send("x")
    assert socket._listeners == []  # listeners removed (their proxies destroyed)


async def test_a_dropped_connection_ends_recv(host: Any) -> None:
    socket = await WebSocketTransport.connect(host.wsUrl, "t", open_timeout=2)
    await socket.recv()
    await socket.send("drop")
    with pytest.raises(TransportError):
        await asyncio.wait_for(socket.recv(), 2)


async def test_close_and_abort_release_the_socket(host: Any) -> None:
    socket = await WebSocketTransport.connect(host.wsUrl, "t", open_timeout=2)
    await socket.close()
    assert socket._listeners == []
    with pytest.raises(TransportError):
        await socket.recv()
    other = await WebSocketTransport.connect(host.wsUrl, "t", open_timeout=2)
    other.abort()
    assert other._listeners == []
    with pytest.raises(TransportError):
        await other.recv()


async def test_a_resume_position_goes_in_the_auth_frame_too(host: Any) -> None:
    socket = await WebSocketTransport.connect(host.wsUrl, "t", last_position="9-0")
    welcome = json.loads(await socket.recv())
    assert welcome["query"] == ""
    assert welcome["auth"] == {"type": "auth", "token": "t", "lastPosition": "9-0"}
    await socket.close()


async def test_a_refused_token_is_an_authentication_error_in_the_browser_too(host: Any) -> None:
    with pytest.raises(AuthenticationError) as info:
        await WebSocketTransport.connect(host.wsUrl, "refused", open_timeout=2)
    assert (info.value.status, info.value.code) == (401, "invalid_token")


async def test_a_socket_that_cannot_open_is_a_transport_error() -> None:
    with pytest.raises(TransportError):
        await WebSocketTransport.connect("ws://127.0.0.1:9/ws", "t", open_timeout=2)
    with pytest.raises(TransportError):
        await WebSocketTransport.connect("not a url", "t", open_timeout=2)
