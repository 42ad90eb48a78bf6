"""The HTTP port against clients that misbehave, on raw sockets to a real `examsync serve`:
half-sent headers and trickled bodies are cut after their timeouts, too many connections are
refused, and an oversized body is refused before it is sent (issue 15, defects 5 and 6)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest

from .conftest import ServerProcess, start_server

TIMEOUT = 1.0  # the header and body timeouts of the server under test
MAX_CONNECTIONS = 6


@pytest.fixture(scope="module")
def server(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    started = start_server(
        tmp_path_factory.mktemp("http-port") / "data",
        redis_server,
        env={
            "EXAMSYNC_HEADER_TIMEOUT_SECONDS": str(TIMEOUT),
            "EXAMSYNC_BODY_IDLE_TIMEOUT_SECONDS": str(TIMEOUT),
            "EXAMSYNC_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        },
    )
    yield started
    started.stop()


def connect(server: ServerProcess, stack: ExitStack) -> socket.socket:
    host, port = server.base.removeprefix("http://").split(":")
    sock = stack.enter_context(socket.create_connection((host, int(port)), timeout=10))
    return sock


def read_until_closed(sock: socket.socket, within: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and after how many seconds it closed."""
    start = time.monotonic()
    sock.settimeout(within)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received, time.monotonic() - start


def read_response(sock: socket.socket) -> bytes:
    """One whole response (it has a Content-Length) off a connection that stays open."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def status_and_body(raw: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def error_code(body: dict[str, object]) -> object:
    error = body["error"]
    assert isinstance(error, dict)
    return error["code"]


def test_half_sent_headers_and_silence_are_closed_after_the_header_timeout(
    server: ServerProcess,
) -> None:
    with ExitStack() as stack:
        silent = connect(server, stack)
        half = [connect(server, stack) for _ in range(3)]
        for sock in half:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        # a normal request meanwhile is served as usual
        assert httpx.get(server.base + "/healthz", timeout=5).status_code == 200
        for sock in [silent, *half]:
            received, after = read_until_closed(sock, within=TIMEOUT * 6)
            assert received == b""
            assert after < TIMEOUT * 4


def test_a_keep_alive_connection_gets_the_header_timeout_again_after_a_response(
    server: ServerProcess,
) -> None:
    with ExitStack() as stack:
        sock = connect(server, stack)
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(request)
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the second request, half sent
        received, after = read_until_closed(sock, within=TIMEOUT * 6)
        assert received == b"" and after < TIMEOUT * 4


def test_a_trickled_body_is_cut_with_408_and_a_steady_one_is_served(
    server: ServerProcess,
) -> None:
    body = json.dumps({"planId": "PLAN1", "candidateId": "C1", "authCode": "x"}).encode()
    head = (
        b"POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    with ExitStack() as stack:
        stalled = connect(server, stack)
        stalled.sendall(head + body[:5])
        received, after = read_until_closed(stalled, within=TIMEOUT * 6)
        status, error = status_and_body(received)
        assert (status, error_code(error)) == (408, "body_timeout")
        assert TIMEOUT * 0.9 < after < TIMEOUT * 4

        # a body arriving in pieces, each within the idle timeout, is read whole: its login is
        # answered (401: no such candidate), longer than one timeout after it began
        steady = connect(server, stack)
        steady.sendall(head)
        start = time.monotonic()
        for i in range(0, len(body), len(body) // 4 + 1):
            time.sleep(TIMEOUT / 2)
            steady.sendall(body[i : i + len(body) // 4 + 1])
        answer = read_response(steady)
        assert time.monotonic() - start > TIMEOUT
        status, error = status_and_body(answer)
        assert (status, error_code(error)) == (401, "invalid_credentials")


def test_an_oversized_login_is_refused_before_its_body_is_sent(server: ServerProcess) -> None:
    with ExitStack() as stack:
        sock = connect(server, stack)
        # 60 MiB announced, not one byte of it sent: the answer comes anyway, and the server
        # closes the connection rather than reading on
        sock.sendall(
            b"POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (60 * 1024 * 1024)
        )
        received, after = read_until_closed(sock, within=TIMEOUT * 0.8)  # before the timeouts
        status, error = status_and_body(received)
        assert (status, error_code(error)) == (413, "payload_too_large")
        assert b"connection: close" in received.lower()


def test_a_plan_import_without_the_admin_token_is_refused_before_its_body_is_sent(
    server: ServerProcess,
) -> None:
    with ExitStack() as stack:
        sock = connect(server, stack)
        # under the plan import's 64 MiB, but only the admin may send that much
        sock.sendall(
            b"PUT /api/v1/admin/plans/PLAN1 HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (60 * 1024 * 1024)
        )
        received, _ = read_until_closed(sock, within=TIMEOUT * 0.8)
        status, error = status_and_body(received)
        assert (status, error_code(error)) == (401, "missing_token")
        assert b"connection: close" in received.lower()


@pytest.mark.parametrize(
    ("target", "authorization", "code"),
    [
        ("/api/v1/captures?kind=webcam", b"", "missing_token"),
        ("/api/v1/captures?kind=webcam", b"Authorization: Bearer forged\r\n", "invalid_token"),
        ("/api/v1/logs", b"", "missing_token"),
        ("/api/v1/logs", b"Authorization: Bearer forged\r\n", "invalid_token"),
    ],
)
def test_an_upload_without_a_valid_session_is_refused_before_its_body_is_sent(
    server: ServerProcess, target: str, authorization: bytes, code: str
) -> None:
    with ExitStack() as stack:
        sock = connect(server, stack)
        # within the capture's 8 MiB (the log batch's 256 KiB), but only a session may send it
        length = 200 * 1024
        sock.sendall(
            b"POST %s HTTP/1.1\r\nHost: x\r\n%sContent-Type: image/jpeg\r\n"
            b"Content-Length: %d\r\n\r\n" % (target.encode(), authorization, length)
        )
        received, _ = read_until_closed(sock, within=TIMEOUT * 0.8)  # before the body timeout
        status, error = status_and_body(received)
        assert (status, error_code(error)) == (401, code)
        assert b"connection: close" in received.lower()


def test_a_chunked_login_is_cut_once_it_passes_the_limit(server: ServerProcess) -> None:
    with ExitStack() as stack:
        sock = connect(server, stack)
        sock.sendall(
            b"POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b" " * 1024
        for _ in range(5):  # 5 KiB, past the login's 4 KiB; the body is never finished
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        received, _ = read_until_closed(sock, within=TIMEOUT * 0.8)
        status, error = status_and_body(received)
        assert (status, error_code(error)) == (413, "payload_too_large")


def test_connections_past_the_cap_are_answered_503_and_closed(server: ServerProcess) -> None:
    with ExitStack() as stack:
        held = [connect(server, stack) for _ in range(MAX_CONNECTIONS)]
        time.sleep(0.2)  # accepted by the server before the next one comes
        extra = connect(server, stack)
        received, _ = read_until_closed(extra, within=TIMEOUT * 0.8)
        status, error = status_and_body(received)
        assert (status, error_code(error)) == (503, "too_many_connections")
        assert b"retry-after: 1" in received.lower()
        for sock in held:
            sock.close()
    time.sleep(0.2)
    # the held ones gone, the port serves again
    assert httpx.get(server.base + "/healthz", timeout=5).status_code == 200
