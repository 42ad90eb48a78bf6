"""Lifecycle benchmark: import and prepare a large plan, then time `end` reaching every socket.

Runs a real `examsync serve` (its private Redis, a SQLite file in a temp dir) and prints:
- PUT of a plan with N candidates, and `prepare` (SQLite rows + every Redis key of seed 000);
- `end` → `exam_end` on K candidate sockets of one server process: p50 / p99 / max of the
  arrival times, measured from just before the admin call;
- the raw baseline in the same run: a bare `websockets.broadcast` of the same message to K
  sockets from a server process of its own (bench/peers.py), and the ratio.

bench/sockets.py measures the sockets themselves (memory, disconnects, python-socketio).

    python bench/lifecycle.py [--candidates 10000] [--sockets 1000]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import httpx
import peers
from benchlib import (
    TOKEN,
    bounded,
    broadcast_times,
    candidate_login,
    close_all,
    deflate_negotiated,
    end_plan,
    latency_line,
    logins,
    machine_line,
    open_socket,
    raise_fd_limit,
    run,
    scratch_dir,
    start_server,
    started_plan,
    stop_server,
)
from websockets.asyncio.client import ClientConnection

from examsync_server.demo.sample import sample_package, sample_plan


async def main(candidates: int, sockets: int) -> None:
    raise_fd_limit(sockets)
    with scratch_dir() as scratch:
        await measure(scratch / "var", candidates, sockets)


async def measure(data: Path, candidates: int, sockets: int) -> None:
    server, base = start_server(data)  # inherits the raised descriptor limit
    clients: list[ClientConnection] = []
    try:
        async with httpx.AsyncClient(
            base_url=base, timeout=300, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as http:
            took: dict[str, float] = {}
            plan = sample_plan(candidates=candidates)
            admin = await asyncio.to_thread(started_plan, base, plan, sample_package(), took)
            admin.close()
            count = min(sockets, candidates)
            sessions = await logins(base, [candidate_login(i) for i in range(count)])
            clients = await bounded(count, lambda i: open_socket(sessions[i]), 100)
            end_times, end_call_ms = await broadcast_times(
                clients, peers.MARKER, lambda: end_plan(http)
            )
    finally:
        await asyncio.to_thread(stop_server, server)
        await close_all(clients)
    raw = await peers.measure(peers.RAW, len(clients), deflate_negotiated(clients[0]))

    print(machine_line())
    print(f"import of {candidates} candidates (PUT): {took['put']:.0f} ms")
    print(f"prepare (SQLite + every seed 000 Redis key): {took['prepare']:.0f} ms")
    print(f"end call (commit {candidates} candidates, Redis, publish): {end_call_ms:.0f} ms")
    print(
        latency_line(f"end -> exam_end on {len(clients)} sockets (admin call included)", end_times)
    )
    print(latency_line(f"raw websockets.broadcast to {len(clients)} sockets", raw.broadcast))
    print(f"ratio (examsync max / raw max): {max(end_times) / max(raw.broadcast):.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=10_000)
    parser.add_argument("--sockets", type=int, default=1_000)
    args = parser.parse_args()
    run(main(args.candidates, args.sockets))
