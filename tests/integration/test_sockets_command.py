"""`examsync sockets`: the socket server alone, in several processes on one port, beside an
`examsync serve` that runs no socket server of its own."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from examsync import SaveChannel
from examsync.cpython import ExamClient
from socket_peer import peer

from .conftest import ADMIN_TOKEN, ServerProcess, free_port, start_server
from .sdk_process import PLAN_ID, client_config
from .test_connection_status import prepared, session
from .test_sdk_client import login, stored_answers, until

SUPERVISOR = {"planId": PLAN_ID, "supervisorId": "SUP202301", "authCode": "SUPAUTH01"}


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"examsync sockets not listening:\n{log.read_text()}")


async def test_two_socket_processes_on_one_port_beside_an_http_server(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    data, socket_port = tmp_path / "shared", free_port()
    server = await asyncio.to_thread(
        start_server,
        data,
        redis_url,
        socket_port=socket_port,
        env={
            "EXAMSYNC_RUN_SOCKET_SERVER": "0",
            "EXAMSYNC_PUBLIC_SOCKET_URL": f"ws://127.0.0.1:{socket_port}/ws",
        },
    )
    servers.append(server)
    log = tmp_path / "sockets.log"
    with log.open("wb") as out:
        sockets = subprocess.Popen(
            [sys.executable, "-m", "examsync_server", "sockets", "--processes", "2"]
            + ["--socket-port", str(socket_port), "--data-dir", str(data)]
            + ["--redis-url", redis_url],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={
                **os.environ,
                "EXAMSYNC_ADMIN_TOKEN": ADMIN_TOKEN,
                "EXAMSYNC_SECRET_KEY": "integration-secret",
            },
        )
    try:
        await asyncio.to_thread(wait_listening, socket_port, sockets, log)
        # The HTTP server has no socket server: nothing listens on its own port but ours.
        health = httpx.get(server.base + "/healthz", timeout=5)
        assert health.status_code == 200
        await asyncio.to_thread(prepared, server)
        url, sup = await asyncio.to_thread(session, server, SUPERVISOR)
        # The kernel spreads the connections over both processes once both listen (the port
        # answers as soon as the first does, so a busy machine may need a few more tries).
        nodes = set()
        deadline = time.monotonic() + 30
        while len(nodes) < 2 and time.monotonic() < deadline:
            async with peer(url, sup) as p:
                nodes.add(p.socket_id.rpartition("-")[0])
        assert len(nodes) == 2, nodes

        async with peer(url, sup) as watcher:
            async with ExamClient(client_config(server.base, tmp_path / "device")) as client:
                await login(client)
                await until(lambda: client.save_channel is SaveChannel.SOCKET, "socket saves")
                client.set_answer("Q001", "2")
                assert await client.flush(timeout=10)  # acked once the persister committed
                joined = await watcher.next_of("examinee_connected", timeout=5)
        assert joined["examineeId"] == "CAND202301"
        assert stored_answers(server) == {"Q001": ("2", 1)}
    finally:
        sockets.send_signal(signal.SIGTERM)
        try:
            code = sockets.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sockets.kill()
            raise
    assert code == 0, log.read_text()[-2000:]
    assert "examsync sockets on ws://127.0.0.1" in log.read_text()
