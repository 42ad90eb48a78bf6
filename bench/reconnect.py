"""Reconnect storm (issue 5): N sockets cut at once come back at once.

A fresh `examsync serve` gets a plan of N candidates and their N sockets (opened 100 at a
time). Then every socket is cut at the same instant (the client aborts its TCP connection, as a
network blip or a server restart would) and all N reconnect at once, as SDKs do: a refused
handshake (`503 too_many_connections`) waits its `Retry-After` plus up to 1 s of jitter (the
SDK's backoff jitter is larger) and tries again. Printed: the time until every socket is back
(p50 / p99 / max of the per-socket times), how many handshakes were refused on the way, and how
many sockets never came back within `--give-up` seconds ("refused for good").

    python bench/reconnect.py [--sockets 10000] [--processes 1] [--give-up 60]
                              [--handshake-limit N]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import peers
from benchlib import (
    bounded,
    candidate_login,
    cpu_by_role,
    cpu_since,
    latency_line,
    logins,
    machine_line,
    raise_fd_limit,
    run,
    scratch_dir,
    start_server,
    started_plan,
    stop_server,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from examsync.frames import auth_frame
from examsync_server.demo.sample import sample_package, sample_plan


class Storm:
    def __init__(self) -> None:
        self.back_ms: list[float] = []
        self.refused = 0
        self.failures: Counter[str] = Counter()
        self.sockets: list[ClientConnection] = []


async def come_back(session: dict[str, Any], started: float, until: float, storm: Storm) -> None:
    url = session["socketUrl"]
    while time.perf_counter() < until:
        try:
            ws = await connect(url, ping_interval=None, open_timeout=30)
            await ws.send(auth_frame(session["token"]))
            await ws.recv()  # welcome
        except InvalidStatus as exc:
            if exc.response.status_code != 503:
                storm.failures[str(exc.response.status_code)] += 1
                return
            storm.refused += 1
            wait = float(exc.response.headers.get("Retry-After", "1"))
            await asyncio.sleep(wait + random.random())
            continue
        except (OSError, TimeoutError) as exc:  # a full accept queue: back off as the SDK does
            storm.failures[type(exc).__name__] += 1
            await asyncio.sleep(0.5 + random.random())
            continue
        storm.back_ms.append((time.perf_counter() - started) * 1000)
        storm.sockets.append(ws)
        return
    storm.failures["gave up"] += 1


async def main(args: argparse.Namespace) -> None:
    raise_fd_limit(args.sockets + 500)  # this process; the server raises its own
    with scratch_dir() as scratch:
        await measure(scratch / "var", args)


async def measure(data: Path, args: argparse.Namespace) -> None:
    server, base = start_server(
        data,
        "--processes",
        str(args.processes),
        env={
            "EXAMSYNC_PING_INTERVAL": str(peers.IDLE_HEARTBEAT),
            **(
                {"EXAMSYNC_HANDSHAKE_LIMIT": str(args.handshake_limit)}
                if args.handshake_limit
                else {}
            ),
        },
    )
    storm = Storm()
    try:
        plan = sample_plan(candidates=args.sockets)
        (await asyncio.to_thread(started_plan, base, plan, sample_package())).close()
        sessions = await logins(base, [candidate_login(i) for i in range(args.sockets)])
        # The first connects, 100 at a time, go through the same gate (and its Retry-After).
        first = Storm()
        opened = time.perf_counter()
        await bounded(
            args.sockets,
            lambda i: come_back(sessions[i], opened, opened + 600, first),
            100,
        )
        opened_s = time.perf_counter() - opened
        await asyncio.sleep(2)
        for ws in first.sockets:
            ws.transport.abort()  # all cut in the same instant
        server_cpu = cpu_by_role(server.pid)
        client_cpu = time.process_time()
        started = time.perf_counter()
        until = started + args.give_up
        await asyncio.gather(*(come_back(s, started, until, storm) for s in sessions))
        client_cpu = time.process_time() - client_cpu
        server_cpu = cpu_since(server.pid, server_cpu)
        gate = args.handshake_limit or "default"
        print(
            machine_line() + f"; {args.processes} socket-server process(es), same cores;"
            f" handshake gate {gate} per second per process"
        )
        print(
            f"first connects ({len(first.sockets)}, 100 at a time): {opened_s:.1f} s,"
            f" {first.refused} refused with Retry-After on the way"
        )
        print(f"{args.sockets} sockets cut at once, all reconnecting at once")
        print(
            f"back: {len(storm.back_ms)} of {args.sockets};"
            f" handshakes refused on the way (503 + Retry-After): {storm.refused};"
            f" other failures: {dict(storm.failures) or 0}"
        )
        print(latency_line("  time until back", storm.back_ms))
        print(
            f"  CPU while they came back: load generator {client_cpu:.1f} s, "
            + ", ".join(f"{role} {sec:.1f} s" for role, sec in server_cpu.items())
        )
        never = args.sockets - len(storm.back_ms)
        print(f"refused for good (not back within {args.give_up:.0f} s): {never}")
    finally:
        await bounded(len(storm.sockets), lambda i: storm.sockets[i].close(), 200)
        stop_server(server)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--give-up", type=float, default=60)
    parser.add_argument(
        "--handshake-limit", type=int, default=0, help="the server's gate (default: its own)"
    )
    run(main(parser.parse_args()))
