"""Lifecycle benchmark: import and prepare a large plan, then time `end` reaching every socket.

Runs a real `examsync serve` (its private Redis, a SQLite file in a temp dir) and prints:
- PUT of a plan with N candidates, and `prepare` (SQLite rows + every Redis key of seed 000);
- `end` → `exam_end` on K candidate sockets of one server process: p50 / p99 / max of the
  arrival times, measured from just before the admin call;
- the raw baseline in the same run: a bare `websockets.broadcast` of the same message to K
  sockets from a server process of its own, and the ratio.

    python bench/lifecycle.py [--candidates 10000] [--sockets 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from benchlib import TOKEN, free_port, latency_line, start_server, stop_server
from websockets.asyncio.client import ClientConnection, connect

from examsync_server.demo.sample import PLAN_ID, sample_package, sample_plan


async def arrivals(sockets: list[ClientConnection], kind: str, since: float) -> list[float]:
    async def one(ws: ClientConnection) -> float:
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if message["type"] == kind:
                return (time.perf_counter() - since) * 1000

    return list(await asyncio.gather(*(one(ws) for ws in sockets)))


RAW_SERVER = """
import asyncio, sys
from websockets.asyncio.server import broadcast, serve
async def main():
    sockets = set()
    async def handler(ws):
        if ws.request.path == "/go":
            message = await ws.recv()
            broadcast(sockets, message)
            await ws.send("sent")
            return
        sockets.add(ws)
        await ws.wait_closed()
        sockets.discard(ws)
    async with serve(handler, "127.0.0.1", int(sys.argv[1])):
        await asyncio.Future()
asyncio.run(main())
"""


async def raw_broadcast(count: int) -> list[float]:
    """The floor: a bare websockets.broadcast from its own process, same message and count."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", RAW_SERVER, str(port)], stdin=subprocess.DEVNULL
    )
    try:
        clients: list[ClientConnection] = []
        for _ in range(100):
            try:
                clients.append(await connect(f"ws://127.0.0.1:{port}/"))
                break
            except OSError:
                await asyncio.sleep(0.1)
        clients += [await connect(f"ws://127.0.0.1:{port}/") for _ in range(count - 1)]
        await asyncio.sleep(0.5)  # let the server register the last handshakes
        message = json.dumps(
            {
                "type": "exam_end",
                "message": "시험이 종료되었습니다.",
                "timestamp": "2024-01-16T18:00:00Z",
                "planId": PLAN_ID,
            },
            ensure_ascii=False,
        )
        async with connect(f"ws://127.0.0.1:{port}/go") as control:
            since = time.perf_counter()
            await control.send(message)
            times = await arrivals(clients, "exam_end", since)
        for ws in clients:
            await ws.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    return times


async def main(candidates: int, sockets: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, sockets * 2 + 256)), hard))
    data = Path(tempfile.mkdtemp(prefix="examsync-bench-"))
    server, base = start_server(data / "var")  # inherits the raised descriptor limit
    try:
        async with httpx.AsyncClient(
            base_url=base, timeout=300, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as http:
            plan = sample_plan(candidates=candidates)
            started = time.perf_counter()
            response = await http.put(f"/api/v1/admin/plans/{PLAN_ID}", json=plan)
            response.raise_for_status()
            put_ms = (time.perf_counter() - started) * 1000
            package = sample_package()
            await http.put(
                f"/api/v1/admin/plans/{PLAN_ID}/package",
                content=package,
                headers={"X-Content-SHA256": hashlib.sha256(package).hexdigest()},
            )
            started = time.perf_counter()
            (await http.post(f"/api/v1/admin/plans/{PLAN_ID}/prepare")).raise_for_status()
            prepare_ms = (time.perf_counter() - started) * 1000
            (await http.post(f"/api/v1/admin/plans/{PLAN_ID}/start")).raise_for_status()

            tokens = []
            for i in range(min(sockets, candidates)):
                body = {
                    "planId": PLAN_ID,
                    "candidateId": f"CAND2023{i + 1:02d}",
                    "authCode": f"AUTH{1234 + i}",
                }
                tokens.append((await http.post("/api/v1/sessions", json=body)).json())
            clients = []
            for session in tokens:
                ws = await connect(f"{session['socketUrl']}?token={session['token']}")
                await ws.recv()  # welcome
                clients.append(ws)
            since = time.perf_counter()
            pending = asyncio.ensure_future(arrivals(clients, "exam_end", since))
            (await http.post(f"/api/v1/admin/plans/{PLAN_ID}/end")).raise_for_status()
            end_call_ms = (time.perf_counter() - since) * 1000
            end_times = await pending
            for ws in clients:
                await ws.close()
        raw_times = await raw_broadcast(len(clients))
    finally:
        stop_server(server)

    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"import of {candidates} candidates (PUT): {put_ms:.0f} ms")
    print(f"prepare (SQLite + every seed 000 Redis key): {prepare_ms:.0f} ms")
    print(f"end call (commit {candidates} candidates, Redis, publish): {end_call_ms:.0f} ms")
    print(
        latency_line(f"end -> exam_end on {len(clients)} sockets (admin call included)", end_times)
    )
    print(latency_line(f"raw websockets.broadcast to {len(clients)} sockets", raw_times))
    print(f"ratio (examsync max / raw max): {max(end_times) / max(raw_times):.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=10_000)
    parser.add_argument("--sockets", type=int, default=1_000)
    args = parser.parse_args()
    asyncio.run(main(args.candidates, args.sockets))
