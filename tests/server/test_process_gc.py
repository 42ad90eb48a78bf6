"""What a server process does to its collector once started (runtime.freeze_startup_heap)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from examsync_server.runtime import GC_YOUNG_THRESHOLD, freeze_startup_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restored_gc")
def test_start_up_objects_are_frozen_and_young_ones_collected_less_often() -> None:
    older = gc.get_threshold()[1:]
    gc.unfreeze()
    freeze_startup_heap()
    assert gc.get_freeze_count() > 1000  # this process's modules, at least
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *older)
