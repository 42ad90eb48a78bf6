"""The engine's entries in the store's meta (``examsync._meta``)."""

from __future__ import annotations

import math

import pytest

from examsync import _meta
from examsync.edits import EditClock
from examsync.exceptions import StorageError


def test_the_edit_clock_is_stored_with_its_bounds() -> None:
    clock = EditClock(offset=1.25, last_ms=1_704_099_600_000, spread=0.004)
    meta = {_meta.EDIT_CLOCK: _meta.dump_clock(clock)}
    assert _meta.load_clock(meta) == clock
    unbounded = EditClock(offset=0.0, last_ms=7)  # nothing seen yet: JSON has no infinity
    assert _meta.dump_clock(unbounded) == "[0.0, 7, null]"
    assert _meta.load_clock({_meta.EDIT_CLOCK: _meta.dump_clock(unbounded)}) == unbounded


def test_an_edit_clock_stored_before_the_bounds_loads_unbounded() -> None:
    loaded = _meta.load_clock({_meta.EDIT_CLOCK: "[2.5, 42]"})
    assert (loaded.offset, loaded.last_ms, loaded.spread) == (2.5, 42, math.inf)
    assert _meta.load_clock({}) == EditClock()


@pytest.mark.parametrize("stored", ["[1]", '"x"', '[1, 2, "wide"]', "not json"])
def test_an_unreadable_edit_clock_is_a_storage_error(stored: str) -> None:
    with pytest.raises(StorageError):
        _meta.load_clock({_meta.EDIT_CLOCK: stored})
