"""The SDK's socket side against `examsync serve` (issue 5): saves over the socket, and a
reconnect that resumes after the last event it got — or reloads when that cannot be done."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import redis

from examsync import (
    Alert,
    ProgressReloaded,
    ReloadState,
    Resumed,
    SaveChannel,
    StageChanged,
    SyncStatus,
)
from examsync.cpython import ExamClient

from .conftest import ServerProcess, free_port
from .proxy import TcpProxy
from .sdk_process import PLAN_ID, client_config
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
    """HTTP goes through a proxy cut once the socket is up: from then on every answer that
    reaches the server's SQLite went over the socket."""
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


async def test_a_reconnect_gets_the_missed_stage_change_then_reloads_when_it_cannot(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    socket_port = free_port()
    with TcpProxy(socket_port) as socket_proxy:
        server = await asyncio.to_thread(
            serve_exam,
            tmp_path / "data",
            redis_url,
            servers,
            socket_port=socket_port,
            env={"EXAMSYNC_PUBLIC_SOCKET_URL": f"ws://127.0.0.1:{socket_proxy.port}/ws"},
        )

        async def advance(from_stage: str) -> None:
            path = f"/api/v1/admin/plans/{PLAN_ID}/advance"
            response = await asyncio.to_thread(
                server.admin, "POST", path, json={"fromStage": from_stage}
            )
            assert response.status_code == 200, response.text

        config = client_config(server.base, tmp_path / "device")
        # No HTTP fallback here: what was missed must come by the socket's resume, not a poll.
        config = replace(config, connection=replace(config.connection, max_attempts=1000))
        async with ExamClient(config) as client:
            seen = recorder(client)
            await login(client)
            assert client.progress["currentStage"] == "STEP01"
            await advance("STEP01")
            await until(lambda: any(isinstance(e, StageChanged) for e in seen), "a stage change")
            stages = [e for e in seen if isinstance(e, StageChanged)]
            assert stages[0].data["stageId"] == "STEP02"

            # 1. away while the last stage ends: the reconnect replays it, then `resumed`
            await asyncio.to_thread(socket_proxy.cut)
            await advance("STEP02")
            await asyncio.to_thread(socket_proxy.heal)
            await until(lambda: any(isinstance(e, Resumed) for e in seen), "resumed")
            stages = [e for e in seen if isinstance(e, StageChanged)]
            assert [s.data["position"] for s in stages] == sorted(
                {s.data["position"] for s in stages}
            )
            assert len(stages) == 2 and stages[1].data.get("stageId") is None
            [resumed] = [e for e in seen if isinstance(e, Resumed)]
            assert (resumed.replayed, resumed.position) == (1, stages[1].data["position"])
            assert not [e for e in seen if isinstance(e, ReloadState | Alert)]

            # 2. away while what it missed is trimmed: `reload_state`, and progress refetched
            await asyncio.to_thread(socket_proxy.cut)
            live = redis.Redis.from_url(redis_url, decode_responses=True)
            live.xadd("socket_queue", {"type": "note", "planId": PLAN_ID, "data": "{}"})
            live.xtrim("socket_queue", maxlen=1, approximate=False)
            await asyncio.to_thread(socket_proxy.heal)
            await until(lambda: any(isinstance(e, ProgressReloaded) for e in seen), "a reload")
            [reload] = [e for e in seen if isinstance(e, ReloadState)]
            assert reload.reason == "position_too_old"
            [reloaded] = [e for e in seen if isinstance(e, ProgressReloaded)]
            assert reloaded.progress["status"] == "completed" == client.progress["status"]
            # Three sockets, each authenticated (and resumed) by its first frame: the server
            # logs every `?token=` it gets, and got none.
            assert "deprecated" not in server.output()


async def test_with_the_socket_cut_the_sdk_polls_and_stays_connected_over_http(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    socket_port = free_port()
    ping = {"EXAMSYNC_PING_INTERVAL": "0.5", "EXAMSYNC_PING_TIMEOUT": "0.5"}
    with TcpProxy(socket_port) as socket_proxy:
        server = await asyncio.to_thread(
            serve_exam,
            tmp_path / "data",
            redis_url,
            servers,
            socket_port=socket_port,
            env={"EXAMSYNC_PUBLIC_SOCKET_URL": f"ws://127.0.0.1:{socket_proxy.port}/ws", **ping},
        )
        live = redis.Redis.from_url(redis_url, decode_responses=True)
        progress = f"plan:{PLAN_ID}:examinee:CAND202301:progress"
        config = client_config(server.base, tmp_path / "device")
        config = replace(config, connection=replace(config.connection, poll_interval=0.3))
        async with ExamClient(config) as client:
            seen = recorder(client)
            await login(client)
            await asyncio.to_thread(socket_proxy.cut)  # for good, until healed below
            await until(lambda: client.save_channel is SaveChannel.HTTP, "fallback")

            def transports() -> list[str]:
                return [
                    json.loads(f["data"]).get("clientInfo", {}).get("transport", "")
                    for _, f in live.xrange("socket_queue")
                    if f["type"] == "examinee_connected"
                ]

            await until(lambda: transports() == ["websocket", "http"], "connected over http")
            response = await asyncio.to_thread(
                server.admin,
                "POST",
                f"/api/v1/admin/plans/{PLAN_ID}/advance",
                json={"fromStage": "STEP01"},
            )
            assert response.status_code == 200, response.text
            await until(lambda: any(isinstance(e, StageChanged) for e in seen), "a polled event")
            await asyncio.sleep(2.0)  # polls keep it connected past ping_interval + timeout
            assert live.hget(progress, "connStatusCode") == "CONNECTED"
            client.set_answer("Q001", "1")  # saves go over HTTP meanwhile
            assert await client.flush(timeout=10)

            await asyncio.to_thread(socket_proxy.heal)
            await until(lambda: client.save_channel is SaveChannel.SOCKET, "the socket is back")
            await asyncio.sleep(2.0)  # the polling session lapses: no drop, the socket holds
            assert live.hget(progress, "connStatusCode") == "CONNECTED"
            kinds = [f["type"] for _, f in live.xrange("socket_queue")]
            assert kinds.count("examinee_disconnected") == 1  # only the first socket's cut
            assert not [e for e in seen if isinstance(e, Alert)]
