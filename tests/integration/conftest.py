"""Real server processes (`examsync serve`) on free loopback ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

ADMIN_TOKEN = "integration-admin-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def examsync(
    *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the `examsync` command as a user would."""
    result = subprocess.run(
        [sys.executable, "-m", "examsync_server", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    base: str
    socket_port: int
    data_dir: Path
    log: Path

    def admin(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        return httpx.request(
            method,
            self.base + path,
            timeout=30,
            **kwargs,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}", **(headers or {})},
        )

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def output(self) -> str:
        return self.log.read_text()


def start_server(
    data_dir: Path,
    redis_url: str | None,
    *extra: str,
    command: str = "serve",
    cwd: Path | None = None,
    port: int | None = None,
    socket_port: int | None = None,
    env: dict[str, str] | None = None,
    ready_timeout: float = 30,
) -> ServerProcess:
    """Start `examsync <command>` and wait until it is healthy. Ports default to free ones;
    pass them to restart a server where its clients expect it. ``env`` adds variables."""
    port, socket_port = port or free_port(), socket_port or free_port()
    args = [
        sys.executable,
        "-m",
        "examsync_server",
        command,
        "--port",
        str(port),
        "--socket-port",
        str(socket_port),
        "--data-dir",
        str(data_dir),
        *extra,
    ]
    if redis_url:
        args += ["--redis-url", redis_url]
    where = cwd / data_dir if cwd else data_dir
    where.mkdir(parents=True, exist_ok=True)
    log = where.parent / f"server-{port}.log"
    restarts = 0
    while log.exists():  # a restart on the same port keeps the earlier log
        restarts += 1
        log = where.parent / f"server-{port}-{restarts}.log"
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env={
                **os.environ,
                "EXAMSYNC_ADMIN_TOKEN": ADMIN_TOKEN,
                "EXAMSYNC_SECRET_KEY": "integration-secret",
                **(env or {}),
            },
        )
    server = ServerProcess(process, f"http://127.0.0.1:{port}", socket_port, where, log)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited {process.returncode}:\n{server.output()}")
        try:
            if httpx.get(server.base + "/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise AssertionError(f"server not healthy in {ready_timeout} s:\n{server.output()}")


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """A list the test appends started servers to; all are stopped afterwards."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False))
    return path
