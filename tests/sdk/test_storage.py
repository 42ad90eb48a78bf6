"""The Storage protocol's data and MemoryStorage (examsync.storage)."""

from __future__ import annotations

import pytest

from examsync.storage import Changes, LocalAnswer, MemoryStorage, OutboxEntry, Snapshot, Storage

T0 = "2024-01-01T09:00:00.000Z"


def test_memory_storage_is_a_storage() -> None:
    assert isinstance(MemoryStorage(), Storage)


def test_commit_applies_puts_and_deletes() -> None:
    storage = MemoryStorage()
    storage.commit(
        Changes(
            answers={"Q1": LocalAnswer("Q1", "a", 1, T0)},
            outbox_put={"Q1": OutboxEntry("Q1", "a", 1, T0, 10.0)},
            version_floors={"Q1": 1},
            meta={"k": "v"},
        )
    )
    storage.commit(Changes(outbox_delete=frozenset({"Q1"}), version_floors={"Q1": 5}))
    snap = storage.load()
    assert snap.answers == {"Q1": LocalAnswer("Q1", "a", 1, T0)}
    assert snap.outbox == {}
    assert snap.version_floors == {"Q1": 5}
    assert snap.meta == {"k": "v"}
    assert storage.commits == 2


def test_snapshots_do_not_change_under_their_holder() -> None:
    storage = MemoryStorage()
    before = storage.load()
    storage.commit(Changes(meta={"k": "v"}))
    assert before.meta == {}
    with pytest.raises(TypeError):
        before.meta["x"] = "y"  # type: ignore[index]


def test_changes_refuse_put_and_delete_of_one_entry() -> None:
    with pytest.raises(ValueError):
        Changes(
            outbox_put={"Q1": OutboxEntry("Q1", "a", 1, T0, 0.0)}, outbox_delete=frozenset({"Q1"})
        )


def test_empty_changes_are_falsy() -> None:
    assert not Changes()
    assert Changes(meta={"k": "v"})


def test_a_storage_can_start_from_a_snapshot() -> None:
    snap = Snapshot(meta={"identity": "x"})
    assert MemoryStorage(snap).load() is snap
