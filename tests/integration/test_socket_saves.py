"""The SDK saves over the socket when the server offers it (issue 5), against `examsync serve`.

HTTP goes through a proxy the test cuts once the socket is up: from then on every answer that
reaches the server's SQLite went over the socket.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from examsync import Alert, SaveChannel, SyncStatus
from examsync.cpython import ExamClient

from .conftest import ServerProcess, free_port
from .proxy import TcpProxy
from .sdk_process import client_config
from .test_sdk_client import (
    check_receipts,
    local_answers,
    login,
    published_keys,
    recorder,
    serve_exam,
    stored_answers,
    until,
)


async def test_the_sdk_saves_over_the_socket_with_http_cut(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    http_port = free_port()
    server = await asyncio.to_thread(
        serve_exam, tmp_path / "data", redis_url, servers, port=http_port
    )
    with TcpProxy(http_port) as http_proxy:
        async with ExamClient(client_config(http_proxy.url, tmp_path / "device")) as client:
            seen = recorder(client)
            await login(client)
            await until(lambda: client.save_channel is SaveChannel.SOCKET, "saves on the socket")
            client.set_answer("Q001", "1")  # the first receipt fetches the keys over HTTP
            assert await client.flush(timeout=10)
            await asyncio.to_thread(http_proxy.cut)

            for n, code in enumerate(("Q002", "Q003", "Q004", "Q005", "Q001")):
                client.set_answer(code, str(n + 2))
            assert await client.flush(timeout=10), client.sync_state
            assert client.sync_state.status is SyncStatus.SYNCED
            mine = local_answers(client)
            assert mine["Q001"] == ("6", 2) and len(mine) == 5
            assert stored_answers(server) == mine
            check_receipts(client, await published_keys(server))
            assert not [e for e in seen if isinstance(e, Alert)]
