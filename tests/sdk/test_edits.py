"""The latest edit wins (examsync.edits): the rule, the time an edit is ordered by, and the
device's edit clock."""

from __future__ import annotations

import itertools
import math
from typing import Any, NamedTuple

import pytest

from examsync.edits import RULE, EditClock, Order, StoredEdit, edit_time_ms, judge_edit
from examsync.messages import AckStatus
from examsync.protocol import parse_timestamp, value_sha256

T = 1_704_099_600_000  # 2024-01-01T09:00:00.000Z, in ms
A, B = value_sha256("a"), value_sha256("b")
HELD = StoredEdit(version=2, value_sha256=A, edited_at=T, device="lap")


class Case(NamedTuple):
    order: Order
    same_value: bool
    stored: StoredEdit | None
    version: int  # the device's proposal
    digest: str
    edited_at: int
    device: str
    status: AckStatus
    kept: StoredEdit


E, ACC, DUP, SUP = StoredEdit, AckStatus.ACCEPTED, AckStatus.DUPLICATE, AckStatus.SUPERSEDED
FIRST, LATER, NOT_LATER = Order.FIRST, Order.LATER, Order.NOT_LATER

# A row a case: where the edit stands, same value?, stored, proposal, digest, time, device,
# then the verdict and what is kept. "later, same value": the stored edit's time moves up.
CASES = {
    "first": Case(FIRST, False, None, 3, B, T, "tab", ACC, E(3, B, T, "tab")),
    "later: stored + 1": Case(LATER, False, HELD, 1, B, T + 1, "tab", ACC, E(3, B, T + 1, "tab")),
    "later: proposal": Case(LATER, False, HELD, 9, B, T + 1, "tab", ACC, E(9, B, T + 1, "tab")),
    "tie, higher device id": Case(LATER, False, HELD, 3, B, T, "phone", ACC, E(3, B, T, "phone")),
    "later, same value": Case(LATER, True, HELD, 5, A, T + 50, "tab", DUP, E(2, A, T + 50, "tab")),
    "the stored edit again": Case(NOT_LATER, True, HELD, 2, A, T, "lap", DUP, HELD),
    "earlier, same value": Case(NOT_LATER, True, HELD, 7, A, T - 1, "tab", DUP, HELD),
    "earlier, another value": Case(NOT_LATER, False, HELD, 3, B, T - 1, "tab", SUP, HELD),
    "tie, lower device id": Case(NOT_LATER, False, HELD, 3, B, T, "desk", SUP, HELD),
    "earlier, far above": Case(NOT_LATER, False, HELD, 50, B, T - 60_000, "tab", SUP, HELD),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_the_rule(case: Case) -> None:
    verdict = judge_edit(case.stored, case.version, case.digest, case.edited_at, case.device)
    assert verdict.status is case.status
    assert verdict.kept == case.kept
    assert RULE[(case.order, case.same_value)] is case.status


def test_the_cases_cover_every_row_of_the_rule() -> None:
    assert {(c.order, c.same_value) for c in CASES.values()} == set(RULE)


def test_an_edit_arriving_late_does_not_beat_a_later_one_whatever_the_order() -> None:
    """Three edits from two devices, in every order of arrival: the latest is kept."""
    edits = [(B, T + 10, "laptop"), (A, T + 30, "tablet"), (value_sha256("c"), T + 20, "laptop")]
    for order in itertools.permutations(edits):
        stored: StoredEdit | None = None
        for version, (digest, at, device) in enumerate(order, start=1):
            stored = judge_edit(stored, version, digest, at, device).kept
        assert stored is not None and (stored.value_sha256, stored.edited_at) == (A, T + 30)


def test_the_edit_time_is_never_after_the_server_received_it() -> None:
    assert edit_time_ms("2024-01-01T09:00:00.123Z", T + 5000) == T + 123
    assert edit_time_ms("2024-01-01T18:00:00.123+09:00", T + 5000) == T + 123
    # A device whose clock runs ahead: its edit counts as made when it arrived.
    assert edit_time_ms("2024-01-01T09:05:00.000Z", T + 5000) == T + 5000


def seconds(ms: int) -> float:
    return ms / 1000


def near(x: float) -> Any:
    """Equal to a microsecond: offsets come from differences of epoch seconds (floats)."""
    return pytest.approx(x, abs=1e-6)


def test_the_clock_stamps_on_the_servers_clock() -> None:
    clock = EditClock()
    device_now = seconds(T) - 120.0  # this device is two minutes behind
    clock.observe_server_time("2024-01-01T09:00:00.000Z", device_now)
    assert clock.offset == pytest.approx(120.0)
    assert clock.stamp(device_now + 1.5) == "2024-01-01T09:00:01.500Z"


def test_a_correction_moves_later_stamps() -> None:
    clock = EditClock()
    clock.observe_server_time("2024-01-01T09:00:00.000Z", seconds(T))
    assert clock.stamp(seconds(T) + 1) == "2024-01-01T09:00:01.000Z"
    # The device's clock was found 10 s fast: the next stamps are 10 s earlier than before,
    # but never before the last one.
    clock.observe_server_time("2024-01-01T09:00:02.000Z", seconds(T) + 12)
    assert clock.offset == pytest.approx(-10.0)
    assert clock.stamp(seconds(T) + 10.5) == "2024-01-01T09:00:01.001Z"
    assert clock.stamp(seconds(T) + 20) == "2024-01-01T09:00:10.000Z"


def test_stamps_never_go_back_when_the_device_clock_is_set_back() -> None:
    clock = EditClock()
    first = clock.stamp(seconds(T))
    stamps = [first, clock.stamp(seconds(T) - 3600), clock.stamp(seconds(T) - 3600)]
    times = [parse_timestamp(s) for s in stamps]
    assert times == sorted(set(times))  # strictly rising, a millisecond apart
    assert stamps[1:] == ["2024-01-01T09:00:00.001Z", "2024-01-01T09:00:00.002Z"]
    assert clock.last_ms == T + 2


def test_a_slow_answer_does_not_undo_what_a_quick_one_measured() -> None:
    """The sign-in's round trip took 20 ms; an ack took 800 ms, the server committing until
    just before it answered. The ack's serverTime says the offset is between -10 ms and
    +790 ms: the sign-in's tighter bounds stand (the middle of the slow round trip would put
    this device 390 ms ahead of the truth)."""
    clock = EditClock()
    clock.observe_server_time("2024-01-01T09:00:00.000Z", seconds(T) + 0.01, sent_at=seconds(T))
    assert (clock.offset, clock.spread) == (near(-0.005), near(0.005))
    clock.observe_server_time("2024-01-01T09:00:01.790Z", seconds(T) + 1.8, sent_at=seconds(T) + 1)
    assert (clock.offset, clock.spread) == (near(-0.005), near(0.005))
    assert clock.stamp(seconds(T) + 2.005) == "2024-01-01T09:00:02.000Z"


def test_bounds_that_overlap_narrow_the_offset() -> None:
    clock = EditClock()
    assert clock.spread == math.inf  # nothing known yet: the first bounds are taken whole
    clock.observe_server_time("2024-01-01T09:00:00.100Z", seconds(T), sent_at=seconds(T) - 0.1)
    assert (clock.offset, clock.spread) == (near(0.15), near(0.05))  # 0.1..0.2
    clock.observe_server_time("2024-01-01T09:00:10.150Z", seconds(T) + 10, sent_at=seconds(T) + 9.9)
    assert (clock.offset, clock.spread) == (near(0.175), near(0.025))  # 0.15..0.2


def test_bounds_that_contradict_the_kept_ones_replace_them() -> None:
    """The device's clock was set 10 s forward by hand: no offset fits both the old bounds
    and the new, so the new ones stand, however wide."""
    clock = EditClock()
    clock.observe_server_time("2024-01-01T09:00:00.000Z", seconds(T) + 0.01, sent_at=seconds(T))
    clock.observe_server_time(
        "2024-01-01T09:00:01.000Z", seconds(T) + 11.5, sent_at=seconds(T) + 10.5
    )
    assert (clock.offset, clock.spread) == (near(-10.0), near(0.5))
    # A serverTime that came with no request is taken as stamped when it arrived.
    clock.observe_server_time("2024-01-01T09:00:05.000Z", seconds(T) + 5)
    assert (clock.offset, clock.spread) == (0.0, 0.0)
