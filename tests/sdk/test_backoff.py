"""Exponential backoff with full jitter (examsync.backoff)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from examsync.backoff import Backoff


def test_ceiling_doubles_from_one_second_to_the_cap() -> None:
    backoff = Backoff()
    assert [backoff.ceiling(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.ceiling(10_000) == 30  # no overflow after a long outage


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    backoff = Backoff(min_delay=0)
    assert backoff.delay(4, 0.0) == 0
    assert backoff.delay(4, 0.5) == 4
    assert backoff.delay(4, 0.999) == pytest.approx(7.992)


def test_min_delay_prevents_a_busy_loop() -> None:
    assert Backoff().delay(1, 0.0) == 0.05


@given(st.integers(1, 100), st.floats(0, 1, exclude_max=True))
def test_delay_is_bounded(attempt: int, rand: float) -> None:
    backoff = Backoff()
    assert backoff.min_delay <= backoff.delay(attempt, rand) <= backoff.cap


@pytest.mark.parametrize("rand", [-0.1, 1.0, float("nan")])
def test_rand_must_be_a_unit_draw(rand: float) -> None:
    with pytest.raises(ValueError):
        Backoff().delay(1, rand)


def test_invalid_configurations() -> None:
    with pytest.raises(ValueError):
        Backoff(base=0)
    with pytest.raises(ValueError):
        Backoff(base=40, cap=30)
    with pytest.raises(ValueError):
        Backoff().ceiling(0)
