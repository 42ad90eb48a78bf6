"""The Storage protocol's data and MemoryStorage (examsync.storage)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


def _outbox(code: str, version: int) -> OutboxEntry:
    return OutboxEntry(code, f"v{version}", version, T0, 1.0)


@pytest.mark.parametrize(
    ("first", "later"),
    [
        (Changes(outbox_put={"Q1": _outbox("Q1", 1)}), Changes(outbox_delete=frozenset({"Q1"}))),
        (Changes(outbox_delete=frozenset({"Q1"})), Changes(outbox_put={"Q1": _outbox("Q1", 2)})),
        (
            Changes(outbox_put={"Q1": _outbox("Q1", 1), "Q2": _outbox("Q2", 1)}, meta={"a": "1"}),
            Changes(outbox_put={"Q1": _outbox("Q1", 2)}, meta={"a": "2", "b": "3"}),
        ),
        (
            Changes(answers={"Q1": LocalAnswer("Q1", "x", 1, T0)}, version_floors={"Q1": 1}),
            Changes(answers={"Q1": LocalAnswer("Q1", "y", 2, T0)}, version_floors={"Q2": 4}),
        ),
    ],
)
def test_then_has_the_effect_of_both_commits_in_order(first: Changes, later: Changes) -> None:
    start = Snapshot(outbox={"Q1": _outbox("Q1", 0), "Q3": _outbox("Q3", 7)})
    assert first.then(later).apply_to(start) == later.apply_to(first.apply_to(start))


_codes = st.sampled_from(["Q1", "Q2", "Q3"])


@st.composite
def _changes(draw: st.DrawFn) -> Changes:
    put = draw(st.dictionaries(_codes, st.integers(1, 9), max_size=3))
    deleted = draw(st.frozensets(_codes, max_size=3)) - put.keys()
    return Changes(
        answers={c: LocalAnswer(c, f"v{v}", v, T0) for c, v in put.items()},
        outbox_put={c: _outbox(c, v) for c, v in put.items()},
        outbox_delete=frozenset(deleted),
        version_floors=draw(st.dictionaries(_codes, st.integers(1, 9), max_size=2)),
        meta=draw(st.dictionaries(st.sampled_from(["a", "b"]), st.text(max_size=2), max_size=2)),
    )


@given(_changes(), _changes(), _changes())
def test_then_merges_any_commits_into_one(a: Changes, b: Changes, c: Changes) -> None:
    start = Snapshot(outbox={"Q1": _outbox("Q1", 0)})
    assert a.then(b).then(c).apply_to(start) == c.apply_to(b.apply_to(a.apply_to(start)))
