"""SQLiteStorage: durability, atomic commits, the one-writer lock (examsync.cpython.storage)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from examsync.cpython.storage import SQLiteStorage
from examsync.engine import Engine, EngineConfig
from examsync.exceptions import StorageError, StoreLockedError
from examsync.messages import Receipt, ReceiptPayload
from examsync.protocol import value_sha256
from examsync.storage import Changes, LocalAnswer, MemoryStorage, OutboxEntry, Storage

T0 = "2024-01-01T09:00:00.000Z"
CONFIG = EngineConfig(plan_id="P", exam_code="E", candidate_id="C")
SDK = str(Path(__file__).resolve().parents[2] / "sdk")


def receipt(code: str, version: int, value: str) -> Receipt:
    payload = ReceiptPayload("P", "C", "E", code, version, value_sha256(value), T0)
    return Receipt("k1", payload, bytes(range(64)))


def test_it_is_a_storage_and_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store" / "answers.sqlite3"
    with SQLiteStorage(path) as storage:
        assert isinstance(storage, Storage)
        assert storage.load().answers == {}
        storage.commit(
            Changes(
                answers={"Q1": LocalAnswer("Q1", "정답 ①", 2, T0)},
                outbox_put={"Q1": OutboxEntry("Q1", "정답 ①", 2, T0, 12.5)},
                receipts={"Q0": receipt("Q0", 1, "x")},
                version_floors={"Q1": 2},
                meta={"identity": "x"},
            )
        )
        storage.commit(Changes(outbox_delete=frozenset({"Q1"}), version_floors={"Q1": 3}))
    with SQLiteStorage(path) as again:
        snap = again.load()
    assert snap.answers == {"Q1": LocalAnswer("Q1", "정답 ①", 2, T0)}
    assert snap.outbox == {}
    assert snap.receipts == {"Q0": receipt("Q0", 1, "x")}
    assert snap.version_floors == {"Q1": 3}
    assert snap.meta == {"identity": "x"}


def test_it_runs_in_wal_with_full_sync(tmp_path: Path) -> None:
    with SQLiteStorage(tmp_path / "s.sqlite3") as storage:
        db = storage._db
        assert db is not None
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL


def test_the_engine_sees_the_same_state_as_with_memory_storage(tmp_path: Path) -> None:
    memory = MemoryStorage()
    with SQLiteStorage(tmp_path / "s.sqlite3") as sqlite:
        for storage in (memory, sqlite):
            engine = Engine(CONFIG, storage, lambda: 0.5)
            engine.set_answer("Q1", "a", 100.0)
            engine.set_answer("Q1", "b", 101.0)
            engine.set_answer("Q2", "c", 102.0)
            engine.record_navigation("Q1", "Q2", 103.0)
        assert sqlite.load() == memory.load()


def test_a_failed_commit_changes_nothing(tmp_path: Path) -> None:
    with SQLiteStorage(tmp_path / "s.sqlite3") as storage:
        storage.commit(Changes(meta={"k": "v"}))
        db = storage._db
        assert db is not None
        db.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'x'); END"
        )
        with pytest.raises(StorageError):
            storage.commit(
                Changes(
                    answers={"Q1": LocalAnswer("Q1", "a", 1, T0)},
                    outbox_put={"Q1": OutboxEntry("Q1", "a", 1, T0, 1.0)},
                )
            )
        assert storage.load().answers == {}


def test_a_closed_store_refuses_use(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "s.sqlite3")
    storage.close()
    storage.close()
    assert storage.closed
    with pytest.raises(StorageError):
        storage.load()


def test_a_second_client_on_the_same_store_gets_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    with SQLiteStorage(path):
        started = time.monotonic()
        with pytest.raises(StoreLockedError) as info:
            SQLiteStorage(path, lock_timeout=0.2)
        assert time.monotonic() - started >= 0.2
    assert info.value.holder == os.getpid()
    assert info.value.path == str(path)
    SQLiteStorage(path).close()  # released on close


def test_a_second_client_waits_for_the_first_to_let_go(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    first = SQLiteStorage(path)
    first.commit(Changes(meta={"by": "first"}))
    timer = threading.Timer(0.2, first.close)
    timer.start()
    with SQLiteStorage(path, lock_timeout=5) as second:
        assert first.closed  # it got in only after the first one closed
        assert second.load().meta == {"by": "first"}
    timer.join()


def _child(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, "PYTHONPATH": SDK},
        stdout=subprocess.PIPE,
        text=True,
    )


def test_an_answer_survives_sigkill_right_after_set_answer_returns(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    child = _child(
        f"""
        import os, signal
        from examsync.engine import Engine, EngineConfig
        from examsync.cpython.storage import SQLiteStorage
        storage = SQLiteStorage({str(path)!r})
        engine = Engine(EngineConfig("P", "E", "C"), storage, lambda: 0.5)
        for i in range(20):
            engine.set_answer(f"Q{{i:02d}}", f"answer {{i}}", 1000.0 + i)
        engine.set_answer("Q00", "changed", 2000.0)
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no atexit, no flush
        """
    )
    child.communicate(timeout=20)
    assert child.returncode == -signal.SIGKILL
    with SQLiteStorage(path, lock_timeout=1) as storage:  # the kernel released the lock
        engine = Engine(CONFIG, storage, lambda: 0.5)
        assert len(engine.outbox) == 20
        assert engine.outbox["Q00"].value == "changed" and engine.outbox["Q00"].version == 2
        assert engine.answers["Q19"].value == "answer 19"
        assert engine.set_answer("Q00", "again", 3000.0) == 3  # versions keep rising


def test_the_lock_holds_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    child = _child(
        f"""
        from examsync.cpython.storage import SQLiteStorage
        storage = SQLiteStorage({str(path)!r})
        print("locked", flush=True)
        __import__("time").sleep(30)
        """
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        with pytest.raises(StoreLockedError) as info:
            SQLiteStorage(path, lock_timeout=0.1)
        assert info.value.holder == child.pid
    finally:
        child.kill()
        child.communicate()
    SQLiteStorage(path, lock_timeout=2).close()
