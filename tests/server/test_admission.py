"""Reconnect storms: a socket-server process takes `handshake_limit` handshakes per window and
turns the rest away at once with 503 + Retry-After, staying responsive."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from examsync.frames import auth_frame
from examsync_server.demo.sample import PLAN_ID
from examsync_server.runtime import Runtime
from examsync_server.sockets.admission import HandshakeGate
from socket_peer import peer

from .conftest import load_plan, login, socket_url

LIMIT, WINDOW, BURST = 50, 1.0, 300


def test_the_gate_takes_a_burst_up_to_the_limit_then_the_rate() -> None:
    gate = HandshakeGate(limit=10, window=1.0)
    assert [gate.admit(0.0) for _ in range(10)] == [None] * 10
    assert gate.admit(0.0) == 1  # refused: come back in a second
    waits = [gate.admit(0.0) for _ in range(29)]
    assert waits[-1] == 3  # 30 refused lately: room for all of them takes 3 s
    assert waits == sorted(waits)  # later ones are told to wait longer
    later = HandshakeGate(limit=10, window=1.0)
    for _ in range(10):
        later.admit(0.0)
    assert later.admit(0.05) is not None  # half a handshake's room: not yet
    assert later.admit(0.15) is None and later.admit(0.16) is not None  # 10/s refill
    assert [later.admit(10.0) for _ in range(10)] == [None] * 10  # full again
    with pytest.raises(ValueError):
        HandshakeGate(limit=0, window=1.0)


@pytest.mark.parametrize(
    "settings_overrides", [{"handshake_limit": LIMIT, "handshake_window_seconds": WINDOW}]
)
async def test_a_burst_of_connects_is_answered_fast_and_the_refused_come_back_in_time(
    client: Client, admin: dict[str, str], runtime: Runtime, sync_redis: Any
) -> None:
    await load_plan(client, admin)
    token = (
        await login(
            client, {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"}
        )
    )["token"]
    sup = (
        await login(
            client, {"planId": PLAN_ID, "supervisorId": "SUP202301", "authCode": "SUPAUTH01"}
        )
    )["token"]
    url = socket_url(runtime)
    loop = asyncio.get_running_loop()
    await asyncio.sleep(WINDOW)  # the logins' test sockets are long forgotten by the gate

    async def attempt() -> tuple[str, Any]:
        """One client: connect, or note the refusal and its Retry-After."""
        try:
            ws = await connect(url, ping_interval=None, open_timeout=10)
        except InvalidStatus as exc:
            body = json.loads(exc.response.body or b"{}")
            return "refused", (exc.response.status_code, exc.response.headers["Retry-After"], body)
        await ws.send(auth_frame(token))
        return "open", ws

    async with peer(socket_url(runtime), sup) as watcher:
        started = loop.time()
        results = await asyncio.gather(*(attempt() for _ in range(BURST)))
        took = loop.time() - started
        # the storm is over quickly, and the process kept answering meanwhile
        await watcher.ws.send(json.dumps({"type": "ping", "ts": 1}))
        await watcher.next_of("pong", timeout=1)
    opened = [ws for kind, ws in results if kind == "open"]
    refused = [r for kind, r in results if kind == "refused"]
    assert len(opened) + len(refused) == BURST
    # at once: the limit; then the rate, for as long as the burst lasted (one event loop runs
    # the clients and the server here, so it takes a while)
    assert LIMIT <= len(opened) <= LIMIT + LIMIT / WINDOW * took + 5, (len(opened), took)
    assert runtime.sockets is not None
    assert runtime.sockets.refused == len(refused)
    assert took < 5, took
    waits = sorted(int(after) for _, after, _ in refused)
    assert {status for status, _, _ in refused} == {503}
    assert {b["error"]["code"] for _, _, b in refused} == {"too_many_connections"}
    assert waits[0] >= 1 and waits[-1] <= len(refused) // LIMIT + 2
    assert waits[-1] >= len(refused) // LIMIT  # spread over the seconds the rate needs
    for _, after, body in refused:
        assert body["error"]["details"]["retryAfter"] == int(after)
    for ws in opened:
        await ws.close()

    # The refused come back when told, each somewhere in the second after (as the SDK adds
    # its jitter): (almost) all get in.
    async def come_back(after: int, i: int) -> str:
        await asyncio.sleep(after + random.Random(i).random())
        kind, ws = await attempt()
        if kind == "open":
            await ws.close()
        return str(kind)

    again = await asyncio.gather(*(come_back(a, i) for i, a in enumerate(waits)))
    assert again.count("open") >= len(waits) - LIMIT // 5, again.count("refused")
