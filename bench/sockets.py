"""Socket benchmark (issue 5): N idle candidate sockets on one `examsync serve` process.

For each N (default 1,000, 5,000 and 10,000) a fresh `examsync serve` (its private Redis, a
SQLite file in a temp dir) gets a plan of N candidates, N candidate sockets and the two
supervisors' sockets, all from this process on 127.0.0.1, and the script prints:

1. memory per socket: the server process's RSS (/proc) before and after the N sockets
   connected (and their CONNECTED statuses went through), divided by N; again after the
   broadcasts;
2. exam_end to every socket, p50 / max of the arrival times: from the admin `end` call (commit,
   Redis, outbox, stream, fan-out), and from an entry put straight on `queue:exam_end` (fan-out
   alone, the part comparable to the peers below);
3. disconnect → supervisor notified: candidate sockets of GROUP01 closed one at a time, then a
   burst closed at once; the time until GROUP01's supervisor has `examinee_disconnected`;
4. the same N clients and the same exam_end payload through python-socketio (AsyncServer on
   uvicorn, emit to a room) and through a bare `websockets.broadcast` (bench/peers.py), in
   the same run: memory per socket, broadcast p50 / max, and the ratios.

Clients offer permessage-deflate, as browsers and the `websockets` client do; the peers accept
it exactly when examsync did. The servers' heartbeats are stretched to 600 s so that idle
sockets stay idle (pings are not measured).

    python bench/sockets.py [--sizes 1000,5000,10000] [--disconnects 200] [--parallel 100]
    python bench/sockets.py --quick        (one small size: does it all work?)
    python bench/sockets.py --sizes 5000 --auth both --no-peers
                                           (token in the first frame vs in the URL)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import peers
from benchlib import (
    TOKEN,
    bounded,
    broadcast_times,
    candidate_id,
    candidate_login,
    close_all,
    deflate_negotiated,
    end_plan,
    latency_line,
    logins,
    machine_line,
    open_socket,
    percentile,
    quiet_collector,
    raise_fd_limit,
    rss_bytes,
    run,
    scratch_dir,
    start_server,
    started_plan,
    stop_server,
)
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection

from examsync_server.base.clock import iso, utc_now
from examsync_server.demo.sample import PLAN_ID, sample_package, sample_plan
from examsync_server.store import keys

SUPERVISORS = (("SUP202301", "SUPAUTH01"), ("SUP202302", "SUPAUTH02"))  # GROUP01, GROUP02
TARGET_BYTES = 20 * 1024  # issue 5, at 10,000 sockets
TARGET_MS = 250.0


class Supervisor:
    """A supervisor's socket, read all the time: counts examinee_connected, notes when each
    examinee_disconnected arrived."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.connected = 0
        self.disconnected: dict[str, float] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for frame in self.ws:
            message = json.loads(frame)
            if message["type"] == "examinee_connected":
                self.connected += 1
            elif message["type"] == "examinee_disconnected":
                self.disconnected[message["examineeId"]] = time.perf_counter()

    def heard(self, examinee: str) -> Callable[[], bool]:
        return lambda: examinee in self.disconnected

    async def close(self) -> None:
        self._reader.cancel()
        await self.ws.close()


async def until(done: Callable[[], bool], timeout: float) -> None:
    """Poll: the times measured are taken by the readers, so this only decides when the next
    step starts."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done within {timeout} s")
        await asyncio.sleep(0.005)


@dataclass
class ExamsyncRun:
    sockets: int
    connect_s: float
    idle_bytes: float
    after_bytes: float
    deflate: bool
    fanout: list[float]  # queue:exam_end entry → arrivals (ms)
    end: list[float]  # admin end call → arrivals (ms)
    end_call_ms: float
    one_by_one: list[float]  # close → examinee_disconnected (ms)
    burst: list[float]


async def measure_examsync(
    n: int, disconnects: int, parallel: int, token_in_url: bool = False
) -> ExamsyncRun:
    with scratch_dir() as scratch:
        return await _measure_examsync(scratch / "var", n, disconnects, parallel, token_in_url)


async def _measure_examsync(
    data: Path, n: int, disconnects: int, parallel: int, token_in_url: bool
) -> ExamsyncRun:
    # Idle sockets stay idle: no pings to answer (the peers get the same stretch).
    server, base = start_server(data, env={"EXAMSYNC_PING_INTERVAL": str(peers.IDLE_HEARTBEAT)})
    redis = Redis.from_url(f"unix://{data / 'redis' / 'redis.sock'}", decode_responses=True)
    clients: list[ClientConnection] = []
    supervisors: list[Supervisor] = []
    try:
        async with httpx.AsyncClient(
            base_url=base, timeout=300, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as http:
            plan = sample_plan(candidates=n)
            (await asyncio.to_thread(started_plan, base, plan, sample_package())).close()
            bodies = [
                {"planId": PLAN_ID, "supervisorId": sid, "authCode": code}
                for sid, code in SUPERVISORS
            ]
            sessions = await logins(base, bodies + [candidate_login(i) for i in range(n)])
            supervisors = [Supervisor(await open_socket(s, token_in_url)) for s in sessions[:2]]
            before = rss_bytes(server.pid)
            started = time.perf_counter()
            clients = await bounded(
                n, lambda i: open_socket(sessions[2 + i], token_in_url), parallel
            )
            connect_s = time.perf_counter() - started
            # Settled when every CONNECTED went through the state manager to a supervisor.
            await until(lambda: sum(s.connected for s in supervisors) >= n, 60 + n / 100)
            await asyncio.sleep(1)
            idle = rss_bytes(server.pid)

            async def fanout_only() -> None:
                fields = {"type": "exam_end", "examId": PLAN_ID, "timestamp": iso(utc_now())}
                await redis.xadd(keys.EXAM_END_STREAM, fields)  # type: ignore[arg-type]

            # Timed the second time, as for the peers (bench/peers.py).
            for _ in range(2):
                fanout, _ = await broadcast_times(clients, peers.MARKER, fanout_only)
            end_times, end_call_ms = await broadcast_times(
                clients, peers.MARKER, lambda: end_plan(http)
            )
            await asyncio.sleep(1)
            after = rss_bytes(server.pid)

        # GROUP01's candidates (even indices): k one at a time, then k more at once.
        k = max(1, min(disconnects, n // 4))
        group01 = [(candidate_id(i), clients[i]) for i in range(0, 4 * k, 2)]
        watcher = supervisors[0]
        one_by_one = []
        with quiet_collector():
            for cid, ws in group01[:k]:
                started = time.perf_counter()
                await ws.close()
                await until(watcher.heard(cid), 30)
                one_by_one.append((watcher.disconnected[cid] - started) * 1000)
        burst = group01[k:]
        with quiet_collector():
            started = time.perf_counter()
            await asyncio.gather(*(ws.close() for _, ws in burst))
            await until(lambda: all(watcher.heard(c)() for c, _ in burst), 60)
        burst_ms = [(watcher.disconnected[c] - started) * 1000 for c, _ in burst]
        return ExamsyncRun(
            n,
            connect_s,
            (idle - before) / n,
            (after - before) / n,
            deflate_negotiated(clients[0]),
            fanout,
            end_times,
            end_call_ms,
            one_by_one,
            burst_ms,
        )
    finally:
        await redis.aclose()
        # In a thread: this loop must keep answering the closing handshakes meanwhile.
        await asyncio.to_thread(stop_server, server)
        for watcher in supervisors:
            await watcher.close()
        await close_all(clients)


def kb(value: float) -> str:
    return f"{value / 1024:.1f} KB"


def spread(millis: list[float], count: int) -> str:
    if not millis:
        return "nothing arrived"
    missing = f", {count - len(millis)} MISSING" if len(millis) < count else ""
    return f"p50 {statistics.median(millis):.0f} ms, max {max(millis):.0f} ms{missing}"


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "n/a"


def report(ours: ExamsyncRun, sio: peers.PeerRun, raw: peers.PeerRun) -> list[str]:
    n = ours.sockets
    rows = [
        ("", "examsync", "python-socketio", "raw websockets"),
        ("connect N (s)", *(f"{r.connect_s:.1f}" for r in (ours, sio, raw))),
        ("deflate negotiated", *(str(r.deflate).lower() for r in (ours, sio, raw))),
        ("memory/socket, idle", *(kb(r.idle_bytes) for r in (ours, sio, raw))),
        ("memory/socket, after", *(kb(r.after_bytes) for r in (ours, sio, raw))),
        ("broadcast", spread(ours.fanout, n), spread(sio.broadcast, n), spread(raw.broadcast, n)),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [f"== {n} sockets =="]
    lines += [
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    ]
    lines += [
        "  (examsync broadcast = an entry on queue:exam_end -> fan-out -> every socket)",
        latency_line("  end call -> exam_end on every socket (examsync)", ours.end),
        f"  (the end call itself: {ours.end_call_ms:.0f} ms: commit of {n} candidates, Redis,"
        " outbox)",
        latency_line(
            "  close -> supervisor has examinee_disconnected, one at a time", ours.one_by_one
        ),
        latency_line(f"  the same, {len(ours.burst)} closed at once", ours.burst),
        f"  ratios examsync/socketio: memory {ratio(ours.idle_bytes, sio.idle_bytes)},"
        f" broadcast p50 {ratio(_p50(ours.fanout), _p50(sio.broadcast))},"
        f" max {ratio(_max(ours.fanout), _max(sio.broadcast))},"
        f" end->exam_end max {ratio(_max(ours.end), _max(sio.broadcast))}",
        f"  ratios examsync/raw websockets: memory {ratio(ours.idle_bytes, raw.idle_bytes)},"
        f" broadcast p50 {ratio(_p50(ours.fanout), _p50(raw.broadcast))},"
        f" max {ratio(_max(ours.fanout), _max(raw.broadcast))}",
    ]
    return lines


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def _p50(millis: list[float]) -> float:
    return statistics.median(millis) if millis else float("nan")


def _max(millis: list[float]) -> float:
    return max(millis) if millis else float("nan")


def auth_lines(runs: dict[str, ExamsyncRun]) -> list[str]:
    """The same size with the token in the first frame and in the URL (the deprecated way, the
    handshake check of before issue 15), side by side."""
    lines = [f"== {next(iter(runs.values())).sockets} sockets: token in the first frame vs URL =="]
    for name, r in runs.items():
        lines.append(
            f"  {name:<11} connect N {r.connect_s:.2f} s, memory/socket {kb(r.idle_bytes)},"
            f" broadcast {spread(r.fanout, r.sockets)}, end->exam_end {spread(r.end, r.sockets)},"
            f" disconnect p50 {_p50(r.one_by_one):.0f} ms"
        )
    return lines


async def main(
    sizes: list[int], disconnects: int, parallel: int, auth: str = "frame", peers_too: bool = True
) -> None:
    limit = raise_fd_limit(max(sizes) + 16)
    print(
        f"{machine_line()}; file descriptors: {limit}; one server process, the load generator"
        " (this process) on the same cores: figures are noisy, compare the ratios against the"
        " baselines measured in this run",
        flush=True,
    )
    modes = {"frame": ["frame"], "url": ["url"], "both": ["frame", "url"]}[auth]
    summary = []
    for n in sizes:
        started = time.perf_counter()
        runs = {
            f"token {mode}": await measure_examsync(n, disconnects, parallel, mode == "url")
            for mode in modes
        }
        ours = next(iter(runs.values()))
        if peers_too:
            sio = await peers.measure(peers.SOCKETIO, n, ours.deflate, parallel)
            raw = await peers.measure(peers.RAW, n, ours.deflate, parallel)
            print("\n".join(report(ours, sio, raw)), flush=True)
        if len(runs) > 1 or not peers_too:
            print("\n".join(auth_lines(runs)), flush=True)
        print(f"  ({time.perf_counter() - started:.0f} s for this size)", flush=True)
        summary.append(ours)
    last = summary[-1]
    print(
        f"issue 5 targets at {last.sockets} sockets: memory {kb(last.idle_bytes)} per socket"
        f" (target <= {kb(TARGET_BYTES)}: {_verdict(last.idle_bytes <= TARGET_BYTES)}),"
        f" end -> last exam_end {_max(last.end):.0f} ms (target <= {TARGET_MS:.0f} ms:"
        f" {_verdict(_max(last.end) <= TARGET_MS)}),"
        f" disconnect p99 {percentile(last.one_by_one, 0.99):.0f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,10000", help="socket counts, comma-separated")
    parser.add_argument("--disconnects", type=int, default=200, help="sockets closed one by one")
    parser.add_argument("--parallel", type=int, default=100, help="connects in flight at once")
    parser.add_argument("--quick", action="store_true", help="one size of 300, 50 disconnects")
    parser.add_argument(
        "--auth",
        choices=("frame", "url", "both"),
        default="frame",
        help="where the clients put the token: the first frame, the URL (deprecated), or both"
        " one after the other (a before/after of issue 15's first-frame auth)",
    )
    parser.add_argument("--no-peers", action="store_true", help="skip python-socketio and raw")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.disconnects = "300", 50
    sizes = [int(s) for s in args.sizes.split(",")]
    run(main(sizes, args.disconnects, args.parallel, args.auth, not args.no_peers))
