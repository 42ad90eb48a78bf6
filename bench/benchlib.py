"""What the benchmarks share: free ports, percentiles, and a real `examsync serve` to drive."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

TOKEN = "bench-admin-token"


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


def start_server(data: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
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
            env={**os.environ, "EXAMSYNC_ADMIN_TOKEN": TOKEN},
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


def started_plan(base: str, plan: dict[str, Any], package: bytes) -> httpx.Client:
    """Import `plan`, upload `package`, prepare and start; the admin client, for more."""
    plan_id = plan["exam_plan"]["plan_id"]
    admin = httpx.Client(base_url=base, timeout=120, headers={"Authorization": f"Bearer {TOKEN}"})
    admin.put(f"/api/v1/admin/plans/{plan_id}", json=plan).raise_for_status()
    admin.put(
        f"/api/v1/admin/plans/{plan_id}/package",
        content=package,
        headers={"X-Content-SHA256": hashlib.sha256(package).hexdigest()},
    ).raise_for_status()
    admin.post(f"/api/v1/admin/plans/{plan_id}/prepare").raise_for_status()
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
