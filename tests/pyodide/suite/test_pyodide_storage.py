"""IndexedDBStorage on a real IndexedDB implementation (fake-indexeddb) inside Pyodide."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from examsync import (
    Changes,
    Engine,
    EngineConfig,
    LocalAnswer,
    MemoryStorage,
    OutboxEntry,
    Snapshot,
    Storage,
    StorageError,
    StorageFullError,
    StorageState,
    Upload,
)
from examsync.messages import Receipt, ReceiptPayload
from examsync.protocol import value_sha256
from examsync.pyodide.storage import IndexedDBStorage, open_storage

T0 = "2024-01-01T09:00:00.000Z"
CONFIG = EngineConfig("PLAN202401", "EXAM202401", "CAND202301")


def receipt(code: str, version: int) -> Receipt:
    payload = ReceiptPayload(
        "PLAN202401", "CAND202301", "EXAM202401", code, version, value_sha256("a"), T0
    )
    return Receipt("k1", payload, bytes(64))


async def test_it_is_a_storage_and_a_new_instance_reads_back_every_store(db_name: str) -> None:
    storage = await IndexedDBStorage.open(db_name)
    assert isinstance(storage, Storage)
    assert storage.load() == Snapshot()
    storage.commit(
        Changes(
            answers={"Q1": LocalAnswer("Q1", "정답 ①", 2, T0)},
            outbox_put={"Q1": OutboxEntry("Q1", "정답 ①", 2, T0, 12.5)},
            receipts={"Q2": receipt("Q2", 1)},
            version_floors={"Q1": 2},
            meta={"identity": "x"},
        )
    )
    storage.commit(Changes(outbox_delete=frozenset({"Q1"}), version_floors={"Q1": 7}))
    expected = storage.load()
    await storage.flush()
    await storage.close()

    again = await IndexedDBStorage.open(db_name)
    assert again.load() == expected
    assert again.load().outbox == {} and again.load().version_floors == {"Q1": 7}
    assert again.load().receipts["Q2"] == receipt("Q2", 1)
    await again.close()


async def test_uploads_with_their_bytes_come_back_on_a_new_instance(db_name: str) -> None:
    storage = await IndexedDBStorage.open(db_name)
    body = bytes(range(256)) * 4  # every byte value survives the trip through JSON
    capture = Upload("cap-1", "capture", {"kind": "webcam"}, "image/jpeg", body, 10.5)
    logs = Upload("log-1", "logs", {}, "application/json", b'{"batchId":"log-1"}', 11.0)
    storage.commit(Changes(uploads_put={"cap-1": capture, "log-1": logs}))
    storage.commit(Changes(uploads_delete=frozenset({"log-1"})))
    await storage.flush()
    reopened = await IndexedDBStorage.open(db_name)
    assert reopened.load().uploads == {"cap-1": capture}
    await reopened.close()
    await storage.close()


async def test_an_answer_is_durable_when_the_engine_is_rebuilt_on_a_new_instance(
    db_name: str,
) -> None:
    storage = await IndexedDBStorage.open(db_name)
    engine = Engine(CONFIG, storage, random.random)
    version = engine.set_answer("Q1", "3", 100.0)
    await storage.flush()  # what the client awaits before set_answer returns
    # No close: as if the tab died right after. A new instance on the same database...
    reopened = await IndexedDBStorage.open(db_name)
    engine2 = Engine(CONFIG, reopened, random.random)
    assert engine2.answers["Q1"].value == "3" and engine2.answers["Q1"].version == version
    assert set(engine2.outbox) == {"Q1"}
    assert engine2.set_answer("Q1", "4", 101.0) == version + 1
    await reopened.close()
    await storage.close()


async def test_commits_queued_behind_a_write_are_merged_in_order(db_name: str) -> None:
    storage = await IndexedDBStorage.open(db_name)
    memory = MemoryStorage()
    steps = [
        Changes(outbox_put={"Q1": OutboxEntry("Q1", "a", 1, T0, 1.0)}),
        Changes(outbox_delete=frozenset({"Q1"})),
        Changes(outbox_put={"Q1": OutboxEntry("Q1", "b", 2, T0, 2.0)}, meta={"m": "1"}),
        Changes(outbox_put={"Q2": OutboxEntry("Q2", "c", 1, T0, 3.0)}, meta={"m": "2"}),
        Changes(outbox_delete=frozenset({"Q2"})),
    ]
    for step in steps:  # no await in between: all but the first queue behind a transaction
        storage.commit(step)
        memory.commit(step)
    await storage.flush()
    reopened = await IndexedDBStorage.open(db_name)
    assert reopened.load() == memory.load() == storage.load()
    await reopened.close()
    await storage.close()


async def test_a_quota_error_is_raised_reported_and_retried_until_it_lands(
    db_name: str, host: Any
) -> None:
    storage = await IndexedDBStorage.open(db_name)
    states: list[StorageState] = []
    storage.on_state = states.append
    storage.commit(Changes(meta={"before": "1"}))
    await storage.flush()

    host.setQuotaExceeded(True)
    storage.commit(Changes(answers={"Q1": LocalAnswer("Q1", "a", 1, T0)}))
    with pytest.raises(StorageFullError) as info:
        await storage.flush()
    assert info.value.operation == "commit"
    assert states == [StorageState("indexeddb", durable=False, error=states[0].error)]
    assert isinstance(states[0].error, StorageFullError)
    assert storage.load().answers["Q1"].value == "a"  # the engine's copy stands
    # A new commit is tried at once (not after the backoff) and fails the same way.
    storage.commit(Changes(answers={"Q2": LocalAnswer("Q2", "b", 1, T0)}))
    with pytest.raises(StorageFullError):
        await asyncio.wait_for(storage.flush(), 1.0)
    before = await IndexedDBStorage.open(db_name)
    assert before.load().answers == {} and before.load().meta == {"before": "1"}
    await before.close()

    host.setQuotaExceeded(False)
    storage.commit(Changes(meta={"after": "1"}))
    await asyncio.wait_for(storage.flush(), 2.0)
    assert states[-1] == StorageState("indexeddb", durable=True)
    after = await IndexedDBStorage.open(db_name)
    assert set(after.load().answers) == {"Q1", "Q2"} and after.load() == storage.load()
    await after.close()
    await storage.close()


async def test_the_backoff_retry_writes_without_a_new_commit(db_name: str, host: Any) -> None:
    storage = await IndexedDBStorage.open(db_name)
    host.setQuotaExceeded(True)
    storage.commit(Changes(meta={"k": "v"}))
    with pytest.raises(StorageFullError):
        await storage.flush()
    host.setQuotaExceeded(False)
    await asyncio.sleep(0.8)  # the first retry comes within 0.5 s (Backoff(base=0.5))
    assert storage.state.durable
    await storage.flush()
    await storage.close()


@pytest.mark.parametrize("mode", ["throw", "error", "hang"])
async def test_when_indexeddb_cannot_open_memory_storage_takes_over_visibly(
    db_name: str, host: Any, mode: str
) -> None:
    storage, state = await open_storage(db_name, factory=host.brokenFactory(mode), timeout=0.2)
    assert isinstance(storage, MemoryStorage)
    assert state.backend == "memory" and not state.durable
    assert isinstance(state.error, StorageError) and state.error.operation == "open"
    expected = {"throw": "SecurityError", "error": "UnknownError", "hang": "no answer"}[mode]
    assert expected in str(state.error)


async def test_with_indexeddb_the_state_is_durable(db_name: str) -> None:
    storage, state = await open_storage(db_name)
    assert isinstance(storage, IndexedDBStorage)
    assert state == StorageState("indexeddb", durable=True)
    await storage.close()


async def test_a_closed_store_refuses_commits(db_name: str) -> None:
    storage = await IndexedDBStorage.open(db_name)
    await storage.close()
    with pytest.raises(StorageError):
        storage.commit(Changes(meta={"k": "v"}))
