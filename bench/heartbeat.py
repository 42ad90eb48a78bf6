"""Silent sockets (issue 5): how long after its last pong a silent socket shows on the screen.

A fresh `examsync serve` with the default heartbeat (a ping every 10 s, 5 s to answer) gets a
plan of N candidates; all N sockets and GROUP01's supervisor answer every ping. Then `--silent`
of GROUP01's candidates stop answering at once (a cable pulled: no close, no frame). For each,
the time from its last pong until the supervisor has its `examinee_disconnected`
(`PING_TIMEOUT`) is printed, and how far that goes beyond `interval + timeout` — the bound is
interval + timeout + 200 ms.

    python bench/heartbeat.py [--sockets 1000] [--silent 100] [--interval 10] [--timeout 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from benchlib import (
    bounded,
    candidate_id,
    candidate_login,
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
from websockets.exceptions import ConnectionClosed

from examsync_server.demo.sample import PLAN_ID, sample_package, sample_plan


class Peer:
    """A socket that answers pings until told to go silent; a supervisor's notes who dropped."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.silent = False
        self.last_pong = 0.0
        self.dropped: dict[str, tuple[float, str]] = {}  # examinee -> (when heard, reason)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                message = json.loads(frame)
                if message["type"] == "ping" and not self.silent:
                    await self.ws.send(json.dumps({"type": "pong", "ts": message.get("ts")}))
                    self.last_pong = time.perf_counter()
                elif message["type"] == "examinee_disconnected":
                    heard = time.perf_counter()
                    self.dropped[message["examineeId"]] = (heard, message.get("reason", ""))
        except ConnectionClosed:
            pass

    async def close(self) -> None:
        self._reader.cancel()
        self.ws.transport.abort()


async def main(args: argparse.Namespace) -> None:
    raise_fd_limit(args.sockets + 500)
    with scratch_dir() as scratch:
        await measure(scratch / "var", args)


async def measure(data: Path, args: argparse.Namespace) -> None:
    server, base = start_server(
        data,
        env={
            "EXAMSYNC_PING_INTERVAL": str(args.interval),
            "EXAMSYNC_PING_TIMEOUT": str(args.timeout),
        },
    )
    peers: list[Peer] = []
    try:
        plan = sample_plan(candidates=args.sockets)
        (await asyncio.to_thread(started_plan, base, plan, sample_package())).close()
        supervisor_login = {"planId": PLAN_ID, "supervisorId": "SUP202301", "authCode": "SUPAUTH01"}
        sessions = await logins(
            base, [supervisor_login] + [candidate_login(i) for i in range(args.sockets)]
        )
        sockets = await bounded(len(sessions), lambda i: open_socket(sessions[i]), 100)
        peers = [Peer(ws) for ws in sockets]
        supervisor, candidates = peers[0], peers[1:]
        # Two ping rounds, so every socket has answered at least one.
        await asyncio.sleep(2 * args.interval + 1)
        silent = {candidate_id(i): candidates[i] for i in range(0, 2 * args.silent, 2)}
        for peer in silent.values():
            peer.silent = True
        deadline = time.monotonic() + args.interval + args.timeout + 30
        while not all(who in supervisor.dropped for who in silent):
            if time.monotonic() > deadline:
                raise TimeoutError("not every silent socket was reported")
            await asyncio.sleep(0.05)

        bound = args.interval + args.timeout
        after_ms = [(supervisor.dropped[who][0] - p.last_pong) * 1000 for who, p in silent.items()]
        reasons = sorted({supervisor.dropped[who][1] for who in silent})
        print(
            machine_line() + f"; one server process, {args.sockets} sockets answering pings,"
            f" the load generator on the same cores"
        )
        print(
            f"heartbeat: ping every {args.interval:g} s, {args.timeout:g} s to answer;"
            f" {len(silent)} of GROUP01's sockets went silent at once; reasons heard: {reasons}"
        )
        print(latency_line("  last pong -> supervisor has examinee_disconnected", after_ms))
        over = [ms - bound * 1000 for ms in after_ms]
        print(
            f"  beyond interval + timeout ({bound:g} s): p50 {sorted(over)[len(over) // 2]:.0f}"
            f" ms, max {max(over):.0f} ms (bound: 200 ms)"
        )
    finally:
        for peer in peers:
            await peer.close()
        stop_server(server)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--silent", type=int, default=100)
    parser.add_argument("--interval", type=float, default=10)
    parser.add_argument("--timeout", type=float, default=5)
    run(main(parser.parse_args()))
