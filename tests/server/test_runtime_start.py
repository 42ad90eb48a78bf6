"""`Runtime.start` releases what it started when a later step fails, and `stop` all of it:
no redis-server, task, thread, file or socket is left behind."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from examsync_server.config import Settings
from examsync_server.presence.state_manager import StateManager
from examsync_server.runtime import Runtime

from .conftest import ADMIN_TOKEN, SECRET_KEY


@dataclass(frozen=True)
class Held:
    """What this process holds: child processes, open files and sockets, threads, tasks."""

    children: frozenset[int]
    fds: frozenset[str]
    threads: frozenset[threading.Thread]
    tasks: frozenset[asyncio.Task[object]]

    @classmethod
    def now(cls) -> Held:
        return cls(
            frozenset(_children()),
            frozenset(_open_fds()),
            # The event loop's default executor (asyncio.to_thread) keeps its threads.
            frozenset(t for t in threading.enumerate() if not t.name.startswith("asyncio_")),
            frozenset(asyncio.all_tasks()),
        )

    def new_since(self, before: Held) -> dict[str, object]:
        found = {
            "children": self.children - before.children,
            "files and sockets": self.fds - before.fds,
            "threads": {t.name for t in self.threads - before.threads},
            "tasks": {t.get_name() for t in self.tasks - before.tasks},
        }
        return {what: items for what, items in found.items() if items}


def _children() -> Iterator[int]:
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # ended meanwhile
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                yield int(entry.name)


def _open_fds() -> Iterator[str]:
    for fd in Path("/proc/self/fd").iterdir():
        try:
            yield f"{fd.name} -> {os.readlink(fd)}"
        except OSError:
            continue  # the directory's own fd, closed by now


async def left_behind(before: Held) -> dict[str, object]:
    """What is new since `before`, after a moment for ending threads to exit."""
    deadline = time.monotonic() + 3
    while (found := Held.now().new_since(before)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return found


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Short: the private redis-server's unix socket path must fit in ~100 bytes.
    top = Path(tempfile.mkdtemp(prefix="es-rt-"))
    yield top / "data"
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    """A server with its own private redis-server (no redis_url): one more thing to release."""
    return Settings().with_changes(
        data_dir=data_dir,
        admin_token=ADMIN_TOKEN,
        secret_key=SECRET_KEY,
        socket_port=0,
        stage_tick_seconds=0.05,
    )


# A failure: makes the given settings fail one step of the start; may patch a seam of ours, or
# hold something until the test ends.
Failure = Callable[[Settings, pytest.MonkeyPatch, ExitStack], Settings]


def no_database(settings: Settings, monkeypatch: pytest.MonkeyPatch, held: ExitStack) -> Settings:
    """The SQLite file's name is taken by a folder: opening it fails (after Redis is up)."""
    settings.storage.sqlite_path.mkdir(parents=True)
    return settings


def not_a_database(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, held: ExitStack
) -> Settings:
    """The SQLite file holds something else: its first pragma fails (after Redis is up)."""
    settings.storage.sqlite_path.parent.mkdir(parents=True)
    settings.storage.sqlite_path.write_bytes(b"not a database" * 100)
    return settings


def migration_fails(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, held: ExitStack
) -> Settings:
    """A table the first migration creates exists already: migrating fails with the writer
    connection open."""
    settings.storage.sqlite_path.parent.mkdir(parents=True)
    with closing(sqlite3.connect(settings.storage.sqlite_path)) as conn:
        conn.execute("CREATE TABLE exam_plan (x)")
    return settings


def no_receipt_keys(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, held: ExitStack
) -> Settings:
    """The receipt keys' folder is a file: loading them fails (after Redis and SQLite)."""
    settings.storage.data_dir.mkdir(parents=True)
    (settings.storage.data_dir / "receipt_keys").write_text("")
    return settings


def socket_port_taken(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, held: ExitStack
) -> Settings:
    """The socket port is taken: listening fails (after the stores and the ack listener)."""
    taken = held.enter_context(socket.socket())
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    return settings.with_changes(socket_port=taken.getsockname()[1])


class Broken(Exception):
    pass


def state_manager_fails(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, held: ExitStack
) -> Settings:
    """The state manager, the last worker waited for, fails as it starts (after the socket
    server, fan-out and the persister)."""

    async def fail(self: StateManager, ready: asyncio.Event | None = None) -> None:
        raise Broken("the state manager cannot start")

    monkeypatch.setattr(StateManager, "run", fail)
    return settings


@pytest.mark.parametrize(
    "failure",
    [
        no_database,
        not_a_database,
        migration_fails,
        no_receipt_keys,
        socket_port_taken,
        state_manager_fails,
    ],
    ids=lambda failure: failure.__name__,
)
async def test_a_failed_start_leaves_nothing_behind(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    failure: Failure,
) -> None:
    with ExitStack() as held:
        settings = failure(settings, monkeypatch, held)
        before = Held.now()
        with pytest.raises(Exception) as failed:
            await Runtime.start(settings)
        if failure is state_manager_fails:
            assert failed.type is Broken
        assert await left_behind(before) == {}


async def test_stop_releases_everything_start_started(settings: Settings) -> None:
    before = Held.now()
    runtime = await Runtime.start(settings)
    assert runtime.embedded is not None and runtime.persister is not None
    redis_pid = runtime.embedded.process.pid
    started = Held.now().new_since(before)
    assert redis_pid in started["children"]  # type: ignore[operator]
    assert {"acks", "fanout", "persister", "state-manager", "sweeper", "stage-timer"} <= set(
        started["tasks"]  # type: ignore[call-overload]
    )
    await runtime.stop()
    assert await left_behind(before) == {}
    assert not Path(f"/proc/{redis_pid}").exists()


async def test_the_persister_runs_without_the_other_workers(settings: Settings) -> None:
    """`--no-run-workers` leaves out the state manager, sweeper and stage timer, never the
    commits: a server that took saves and committed none would answer each with a 503."""
    runtime = await Runtime.start(settings.with_changes(run_workers=False))
    try:
        names = {task.get_name() for task in runtime.tasks}
        assert runtime.persister is not None and "persister" in names
        assert not names & {"state-manager", "sweeper", "stage-timer"}
    finally:
        await runtime.stop()
