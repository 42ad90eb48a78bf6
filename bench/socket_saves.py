"""Saves over the socket (issue 5): durable saves/s, each answered by `save_ack` after commit.

A fresh `examsync serve` (its private Redis, a SQLite file in a temp dir) gets a plan of
`--candidates` candidates; `--sockets` of them open a socket each and save in a closed loop,
one save in flight per socket as the SDK sends them (each waits for its ack), the same ~2 KB
saves as bench/saves.py. In the same run, for ratios: the same number of workers saving over
HTTP (`POST /api/v1/answers`), and the raw pipeline without HTTP or sockets (bench/saves.py's
`raw_limit`). Every acknowledged answer is then looked up in SQLite.

    python bench/socket_saves.py [--candidates 1000] [--sockets 256] [--seconds 8]
                                 [--processes 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from pathlib import Path

from benchlib import (
    bounded,
    candidate_id,
    candidate_login,
    close_all,
    cpu_by_role,
    cpu_line,
    cpu_since,
    latency_line,
    logins,
    machine_line,
    open_socket,
    quiet_collector,
    raise_fd_limit,
    run,
    scratch_dir,
    start_server,
    started_plan,
    stop_server,
)
from saves import Candidate, Results, bench_package, closed_loop, lost_answers, raw_limit
from websockets.asyncio.client import ClientConnection

from examsync.frames import save_frame
from examsync_server.demo.sample import sample_plan


async def save_over(ws: ClientConnection, cand: Candidate, n: int, results: Results) -> None:
    body, sent = cand.next_save()
    request_id = f"{cand.id}-{n}"
    started = time.perf_counter()
    await ws.send(save_frame(request_id, body))
    # How the server starts this save's ack (examsync.frames.save_ack_frame): the ack is
    # recognised without decoding its receipts, so the load generator's own JSON work does
    # not take CPU from the server it shares the cores with.
    acked = '{"type":"save_ack","id":' + json.dumps(request_id) + ","
    while True:
        text = await ws.recv()
        if isinstance(text, str) and text.startswith(acked):
            break
        frame = json.loads(text)
        if frame.get("type") == "ping":  # the heartbeat stays on, as in an exam
            await ws.send(json.dumps({"type": "pong", "ts": frame.get("ts")}))
            continue
        if frame.get("id") != request_id:
            continue  # an event
        if frame["type"] != "save_ack":
            results.error(str(frame.get("status")))
            return
        break
    results.latencies.append((time.perf_counter() - started) * 1000)
    results.acked.append((cand.id, sent))
    results.sizes.append(len(body))


async def socket_loop(
    sockets: list[ClientConnection], cands: list[Candidate], seconds: float
) -> tuple[Results, float]:
    results = Results()
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()

    async def worker(i: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            await save_over(sockets[i], cands[i], n, results)
            n += 1

    await asyncio.gather(*(worker(i) for i in range(len(sockets))))
    return results, time.perf_counter() - started


async def main(args: argparse.Namespace) -> None:
    raise_fd_limit(args.sockets + 100)
    with scratch_dir() as scratch:
        await measure(scratch / "var", args)


async def measure(data: Path, args: argparse.Namespace) -> None:
    server, base = start_server(data, "--processes", str(args.processes))
    try:
        started_plan(base, sample_plan(candidates=args.candidates), bench_package()).close()
        rng = random.Random(7)
        sessions = await logins(base, [candidate_login(i) for i in range(args.candidates)])
        cands = [
            Candidate(candidate_id(i), session["token"], rng) for i, session in enumerate(sessions)
        ]
        per_candidate = int(args.seconds * 12_000 / args.sockets) + 50
        for cand in cands:
            cand.prepare(per_candidate)
        on_socket = cands[: args.sockets]
        sockets = await bounded(args.sockets, lambda i: open_socket(sessions[i]), 50)

        await socket_loop(sockets, on_socket, 2)  # warm-up
        cpu_before, own_before = cpu_by_role(server.pid), time.process_time()
        with quiet_collector():
            over_socket, socket_elapsed = await socket_loop(sockets, on_socket, args.seconds)
        cpu = cpu_since(server.pid, cpu_before)
        cpu["load generator"] = time.process_time() - own_before
        with quiet_collector():
            over_http, http_elapsed = await closed_loop(base, on_socket, args.seconds, args.sockets)
        await close_all(sockets)
        raw = await raw_limit(
            f"unix://{data / 'redis' / 'redis.sock'}", data / "examsync.sqlite3", cands, 20_000
        )
        lost = lost_answers(data / "examsync.sqlite3", over_socket, over_http)

        socket_rate = len(over_socket.latencies) / socket_elapsed
        http_rate = len(over_http.latencies) / http_elapsed
        print(machine_line() + f"; {args.processes} server process(es), load on the same cores")
        print(
            f"candidates {args.candidates}, {args.sockets} sockets saving, one save in flight"
            f" each, saves of {statistics.mean(over_socket.sizes):.0f} B on average"
        )
        print(
            f"over the socket: {socket_rate:.0f} durable saves/s over {socket_elapsed:.1f} s,"
            f" errors {over_socket.errors or 0}"
        )
        print(latency_line("  save -> save_ack", over_socket.latencies))
        print(cpu_line("  CPU per save", cpu, len(over_socket.latencies), fit=True))
        print(
            f"over HTTP, {args.sockets} workers: {http_rate:.0f} durable saves/s,"
            f" errors {over_http.errors or 0}"
        )
        print(latency_line("  POST -> 200", over_http.latencies))
        print(f"raw limit (stream + group commit + cache, no HTTP, no socket): {raw:.0f} saves/s")
        print(
            f"ratios: socket / HTTP {socket_rate / http_rate:.2f},"
            f" socket / raw {socket_rate / raw:.2f}"
        )
        print(f"acknowledged answers missing from SQLite: {lost}")
    finally:
        stop_server(server)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--sockets", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--processes", type=int, default=2)
    run(main(parser.parse_args()))
