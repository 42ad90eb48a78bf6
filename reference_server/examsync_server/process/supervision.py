"""`examsync serve --processes N` (and `examsync sockets --processes N`): N server processes
sharing one port, one Redis, one data dir.

One Python process is held to one core by the GIL; an exam's saves are worth more. The parent
starts the private Redis (when no --redis-url is given), then N HTTP children on the same HTTP
and socket ports (SO_REUSEPORT: the kernel spreads connections) and one `examsync persister`
child that commits every child's saves, and restarts a child that dies. The persister has a
process of its own so that its SQLite work and the requests do not share a GIL, and the HTTP
children yield the CPU to it (YIELD_NICE): each save waits for it, the one serial stage
(docs/server.md, "Processes"). Everything the children share is built for several processes:
the persister is a consumer group (a second one could join), acks cross processes over
pub/sub, fan-out runs in each.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from types import FrameType

import httpx

from ..config import Settings, settings_env
from ..errors import StartupError
from .embedded_redis import EmbeddedRedis

log = logging.getLogger(__name__)

RESTART_DELAY_SECONDS = 1.0
# The niceness the HTTP and socket children add (Settings.nice); the persister adds none, so
# on busy cores the stage every save waits for gets one first (docs/server.md, "Processes").
YIELD_NICE = 5


def supervise(settings: Settings, on_ready: Callable[[str], None]) -> int:
    if settings.process.http_server != "uvicorn":
        raise StartupError("--processes above 1 needs --http-server uvicorn (SO_REUSEPORT)")
    embedded = None
    redis_url = settings.storage.redis_url
    if not redis_url:
        embedded = EmbeddedRedis.start_sync(settings.storage.data_dir / "redis")
        redis_url = embedded.url
    # The children get every setting of ours through its variable; the URL may be new.
    args = [sys.executable, "-m", "examsync_server", "serve", "--redis-url", redis_url]
    env = {
        **os.environ,
        **settings_env(settings),
        "EXAMSYNC_REUSE_PORT": "1",
        "EXAMSYNC_PROCESSES": "1",
        "EXAMSYNC_RUN_PERSISTER": "0",
        "EXAMSYNC_NICE": str(YIELD_NICE),
    }
    persister_args = [
        sys.executable,
        "-m",
        "examsync_server",
        "persister",
        "--redis-url",
        redis_url,
    ]
    # The persister keeps its consumer name across restarts, so a new one resumes the entries
    # the dead one had read but not committed, instead of waiting for them to be claimed.
    persister_env = {**env, "EXAMSYNC_NODE_ID": f"persister-{os.getpid()}", "EXAMSYNC_NICE": "0"}
    commands = [(persister_args, persister_env)] + [(args, env)] * settings.process.processes
    base = f"http://{settings.listen.host}:{settings.listen.port}"
    try:
        return _keep_running(
            commands, lambda children: _wait_healthy(base, children), lambda: on_ready(base)
        )
    finally:
        if embedded is not None:
            embedded.stop()


def supervise_sockets(settings: Settings, on_ready: Callable[[str], None]) -> int:
    """`examsync sockets --processes N`: N socket servers on one port (SO_REUSEPORT), each
    restarted when it dies. They use the HTTP servers' Redis, so there is no private one."""
    if not settings.listen.socket_port:
        raise StartupError("--processes above 1 needs a fixed --socket-port for all to share")
    args = [sys.executable, "-m", "examsync_server", "sockets"]
    env = {
        **os.environ,
        **settings_env(settings),
        "EXAMSYNC_REUSE_PORT": "1",
        "EXAMSYNC_PROCESSES": "1",
        "EXAMSYNC_NICE": str(YIELD_NICE),
    }
    url = f"ws://{settings.listen.socket_host}:{settings.listen.socket_port}/ws"
    return _keep_running(
        [(args, env)] * settings.process.processes,
        lambda children: _wait_listening(
            settings.listen.socket_host, settings.listen.socket_port, children
        ),
        lambda: on_ready(url),
    )


def _keep_running(
    commands: list[tuple[list[str], dict[str, str]]],
    wait_ready: Callable[[list[subprocess.Popen[bytes]]], None],
    on_ready: Callable[[], None],
) -> int:
    """Run one child per command until SIGINT/SIGTERM, restarting any that dies."""
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    children = [_spawn(*command) for command in commands]
    try:
        wait_ready(children)
        on_ready()
        while not stopping:
            time.sleep(0.5)
            for i, child in enumerate(children):
                if child.poll() is not None and not stopping:
                    log.error(
                        "server process %d exited with %s; restarting", child.pid, child.returncode
                    )
                    time.sleep(RESTART_DELAY_SECONDS)
                    children[i] = _spawn(*commands[i])
        return 0
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL)


def _wait_healthy(base: str, children: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            raise StartupError("a server process stopped during start-up (see its output)")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise StartupError(f"the server processes did not become healthy at {base}")


def _wait_listening(host: str, port: int, children: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            raise StartupError("a socket-server process stopped during start-up (see its output)")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise StartupError(f"the socket servers did not listen on {host}:{port}")
