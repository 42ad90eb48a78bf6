"""What the benchmarks share: free ports, percentiles, a real `examsync serve` to drive, a
prepared plan, logins, and many sockets (bounded connects, arrival times, memory)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
from loadgen import RawHttp
from websockets.asyncio.client import ClientConnection, connect

from examsync.frames import auth_frame
from examsync_server.demo.sample import PLAN_ID

TOKEN = "bench-admin-token-0123456789"
T = TypeVar("T")


def run(main: Coroutine[Any, Any, None]) -> None:
    """The server's own loop (uvloop) when installed: what the load generator spends is taken
    from the server on the same cores, so it should spend as little as the server does."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def latency_line(label: str, millis: list[float]) -> str:
    if not millis:
        return f"{label}: nothing measured"
    return (
        f"{label}: p50 {statistics.median(millis):.1f} ms, p99 {percentile(millis, 0.99):.1f}"
        f" ms, max {max(millis):.1f} ms (n={len(millis)})"
    )


def cpu_line(label: str, cpu_seconds: Mapping[str, float], saves: int, fit: bool = False) -> str:
    """CPU per save by process (from cpu_since, plus any other role) and in all; with `fit`
    (every process of the run counted, the load generator too), the saves/s the machine's
    cores would fit if every process were busy all the time."""
    per_save = {role: used / max(1, saves) for role, used in cpu_seconds.items()}
    total, cores = sum(per_save.values()), os.cpu_count() or 1
    line = (
        f"{label}: "
        + ", ".join(f"{role} {used * 1e6:.0f} µs" for role, used in per_save.items())
        + f"; in all {total * 1e6:.0f} µs"
    )
    if fit and total:
        line += f", so {cores} cores fit {cores / total:.0f} saves/s"
    return line


def machine_line() -> str:
    return f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}"


def raise_fd_limit(sockets: int) -> int:
    """Room for `sockets` connections in this process and in the servers it starts afterwards
    (children inherit the limit); returns the soft limit now in force."""
    need = sockets + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        raise SystemExit(
            f"{sockets} sockets need {need} file descriptors; the hard limit (`ulimit -Hn`) is"
            f" {hard}: raise it or ask for fewer sockets"
        )
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def bounded(count: int, work: Callable[[int], Awaitable[T]], parallel: int) -> list[T]:
    """work(0) … work(count - 1), at most `parallel` at a time, results in order. A few workers
    rather than a task per item: 10,000 pending connects would only queue in the backlog."""
    slots: dict[int, T] = {}
    todo = iter(range(count))

    async def worker() -> None:
        for i in todo:  # one iterator shared by all workers: each item is taken once
            slots[i] = await work(i)

    await asyncio.gather(*(worker() for _ in range(min(parallel, count))))
    return [slots[i] for i in range(count)]


class Arrivals:
    """When each socket first gets a frame containing `marker` (a substring test: cheaper than
    decoding 10,000 frames, and the sockets waited on get nothing else meanwhile).

    Start it before the trigger and `await ready()`: setting up the waits is not timed."""

    def __init__(self, sockets: Sequence[ClientConnection], marker: str) -> None:
        self.marker = marker
        self.times: list[float | None] = [None] * len(sockets)
        self.tasks = [asyncio.create_task(self._wait(i, ws)) for i, ws in enumerate(sockets)]

    async def _wait(self, i: int, ws: ClientConnection) -> None:
        while True:
            frame = await ws.recv()
            if self.marker in (frame if isinstance(frame, str) else frame.decode()):
                self.times[i] = time.perf_counter()
                return

    async def ready(self) -> None:
        await asyncio.sleep(0.1)  # every wait has started and blocks in recv()

    async def millis(self, since: float, timeout: float = 60.0) -> list[float]:
        """Arrival times in ms after `since`, of the sockets that got it within `timeout`."""
        _, pending = await asyncio.wait(self.tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        return [(t - since) * 1000 for t in self.times if t is not None]


async def broadcast_times(
    sockets: Sequence[ClientConnection], marker: str, trigger: Callable[[], Awaitable[T]]
) -> tuple[list[float], T]:
    """Arrival times (ms) of the first frame with `marker` on every socket, counted from just
    before `trigger()`, and what the trigger returned."""
    with quiet_collector():
        waits = Arrivals(sockets, marker)
        await waits.ready()
        since = time.perf_counter()
        result = await trigger()
        return await waits.millis(since), result


@contextlib.contextmanager
def quiet_collector() -> Iterator[None]:
    """No cycle collection in this process meanwhile. Holding 10,000 client connections, the
    load generator's own full collections take ~0.5 s each, and one landing in a timed window
    would be charged to the server measured."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def open_socket(session: Mapping[str, Any], token_in_url: bool = False) -> ClientConnection:
    """A session's socket on the socket server, its welcome read: the token in the first frame,
    or (`token_in_url`, the deprecated way of older SDKs) in the URL. No keepalive task per
    socket on this side (ping_interval=None): the server's app-level pings are what count."""
    url = session["socketUrl"]
    if token_in_url:
        url = f"{url}?token={session['token']}"
    ws = await connect(url, ping_interval=None, open_timeout=60)
    if not token_in_url:
        await ws.send(auth_frame(session["token"]))
    await ws.recv()  # welcome
    return ws


def deflate_negotiated(ws: ClientConnection) -> bool:
    assert ws.response is not None
    return "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")


async def close_all(sockets: Sequence[ClientConnection], parallel: int = 200) -> None:
    await bounded(len(sockets), lambda i: sockets[i].close(), parallel)


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A temp dir for one run's server data and server.log: removed after a clean run (one of
    10,000 sockets leaves ~200 MB), kept after a failure for its server.log."""
    path = Path(tempfile.mkdtemp(prefix="examsync-bench-"))
    try:
        yield path
    except BaseException:
        print(f"kept {path} for its server.log", file=sys.stderr)
        raise
    shutil.rmtree(path, ignore_errors=True)


def start_server(
    data: Path, *extra: str, env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """`examsync serve` on free ports with its private Redis in `data`; waits until healthy."""
    port, socket_port = free_port(), free_port()
    data.mkdir(parents=True, exist_ok=True)
    args = [
        sys.executable,
        "-m",
        "examsync_server",
        "serve",
        "--port",
        str(port),
        "--socket-port",
        str(socket_port),
        "--data-dir",
        str(data),
        *extra,
    ]
    with (data.parent / "server.log").open("w") as log:
        server = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "EXAMSYNC_ADMIN_TOKEN": TOKEN, **(env or {})},
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited; see {data.parent / 'server.log'}")
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return server, base
        except httpx.TransportError:
            time.sleep(0.1)
    stop_server(server)
    raise RuntimeError("the server did not become healthy in 60 s")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=60)


async def end_plan(http: httpx.AsyncClient) -> float:
    """The admin `end` call (`http` carries the admin token); how long it took (ms)."""
    started = time.perf_counter()
    (await http.post(f"/api/v1/admin/plans/{PLAN_ID}/end")).raise_for_status()
    return (time.perf_counter() - started) * 1000


def candidate_id(i: int) -> str:
    """The i-th (from 0) candidate of `sample_plan`; even ones are in GROUP01, odd in GROUP02."""
    return f"CAND2023{i + 1:02d}"


def candidate_login(i: int) -> dict[str, str]:
    return {"planId": PLAN_ID, "candidateId": candidate_id(i), "authCode": f"AUTH{1234 + i}"}


async def logins(base: str, bodies: Sequence[Mapping[str, str]], parallel: int = 16) -> list[Any]:
    """`POST /api/v1/sessions` for each body, `parallel` at a time; the session responses."""
    http = RawHttp(base, parallel)
    head = http.head("/api/v1/sessions", {"Content-Type": "application/json"})

    async def one(i: int) -> Any:
        status, body = await http.post(head, json.dumps(bodies[i]).encode())
        if status not in (200, 201):
            raise RuntimeError(f"login {dict(bodies[i])} failed: {status} {body[:200]!r}")
        return json.loads(body)

    try:
        return await bounded(len(bodies), one, parallel)
    finally:
        http.close()


def started_plan(
    base: str, plan: dict[str, Any], package: bytes, took: dict[str, float] | None = None
) -> httpx.Client:
    """Import `plan`, upload `package`, prepare and start; the admin client, for more. `took`
    gets how long the import (`put`) and the prepare (`prepare`) took, in ms."""
    plan_id = plan["exam_plan"]["plan_id"]
    took = {} if took is None else took
    admin = httpx.Client(base_url=base, timeout=300, headers={"Authorization": f"Bearer {TOKEN}"})
    started = time.perf_counter()
    admin.put(f"/api/v1/admin/plans/{plan_id}", json=plan).raise_for_status()
    took["put"] = (time.perf_counter() - started) * 1000
    admin.put(
        f"/api/v1/admin/plans/{plan_id}/package",
        content=package,
        headers={"X-Content-SHA256": hashlib.sha256(package).hexdigest()},
    ).raise_for_status()
    started = time.perf_counter()
    admin.post(f"/api/v1/admin/plans/{plan_id}/prepare").raise_for_status()
    took["prepare"] = (time.perf_counter() - started) * 1000
    admin.post(f"/api/v1/admin/plans/{plan_id}/start").raise_for_status()
    return admin


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def cpu_since(root: int, before: dict[str, float]) -> dict[str, float]:
    """CPU seconds by role (see cpu_by_role) used since `before` was taken."""
    return {role: s - before.get(role, 0.0) for role, s in sorted(cpu_by_role(root).items())}


def cpu_by_role(root: int) -> dict[str, float]:
    """CPU seconds used so far by each process under `root`, summed by role: the `examsync`
    subcommand it runs (serve, persister) or the program (redis-server)."""
    ticks = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = {}
    pending = [root]
    while pending:
        pid = pending.pop()
        pending += _children(pid)
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv if a]
        role = next(
            (w for w in words if w in ("serve", "persister")), Path(words[0].split()[0]).name
        )
        totals[role] = totals.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return totals
