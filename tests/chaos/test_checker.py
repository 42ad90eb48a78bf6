"""The zero-loss checker on hand-made histories: a clean one passes, and each property has a
history that breaks it (so the chaos run's zeros mean something)."""

from __future__ import annotations

from dataclasses import replace

from examsync.protocol import value_sha256

from .checker import check
from .history import (
    Ack,
    Edit,
    Failure,
    Final,
    HistoryRow,
    Overridden,
    Probe,
    Record,
    ServerState,
    Synced,
    parse_lines,
    to_line,
)

CAND = "CAND202301"


def accepted(quiz: str, version: int, value: str, client: str = "a") -> Ack:
    return Ack(client, CAND, quiz, "accepted", version, value_sha256(value), 1.0)


def row(quiz: str, version: int, value: str, result: str = "accepted") -> HistoryRow:
    return HistoryRow(CAND, quiz, version, value_sha256(value), result)


# Two devices of one candidate: A's "x" then "y" on Q001, B's later "z" wins as version 3;
# A's late "w" is superseded and A takes B's value.
CLEAN_HISTORY: list[Record] = [
    Edit("a", CAND, "Q001", "x", 1, 0.1),
    accepted("Q001", 1, "x"),
    Edit("a", CAND, "Q001", "y", 2, 0.2),
    accepted("Q001", 2, "y"),
    Synced("a", CAND, {"Q001": "y"}, 0.3),
    Edit("b", CAND, "Q001", "z", 3, 0.4),
    accepted("Q001", 3, "z", client="b"),
    Failure("a", CAND, "TransportError: cut", 1, 0.5),
    Edit("a", CAND, "Q002", "1", 1, 0.5),
    accepted("Q002", 1, "1"),
    Overridden("a", CAND, "Q001", "w", "z", 3, 0.6),
    Synced("a", CAND, {"Q001": "z", "Q002": "1"}, 0.7),
    Final("a", CAND, {"Q001": ("z", 3), "Q002": ("1", 1)}, False, 0.8),
    Final("b", CAND, {"Q001": ("z", 3), "Q002": ("1", 1)}, False, 0.8),
]
CLEAN_SERVER = ServerState(
    kept={(CAND, "Q001"): ("z", 3), (CAND, "Q002"): ("1", 1)},
    history=(
        row("Q001", 1, "x"),
        row("Q001", 2, "y"),
        row("Q001", 3, "z"),
        row("Q001", 2, "w", "superseded"),
        row("Q001", 2, "w", "superseded"),  # a retried superseded save: a new message, a row
        row("Q002", 1, "1"),
    ),
    restored={CAND: {"Q001": ("z", 3), "Q002": ("1", 1)}},
)


def test_a_clean_history_passes() -> None:
    verdict = check(CLEAN_HISTORY, CLEAN_SERVER)
    assert verdict.ok, verdict.problems()
    assert verdict.acks == 4


def test_the_history_round_trips_through_jsonl() -> None:
    lines = [to_line(r) for r in CLEAN_HISTORY]
    assert parse_lines(["", *lines]) == CLEAN_HISTORY


def test_an_accepted_ack_missing_from_the_store_is_lost() -> None:
    server = replace(CLEAN_SERVER, history=CLEAN_SERVER.history[1:])  # Q001 v1 "x" gone
    verdict = check(CLEAN_HISTORY, server)
    assert [(v.quiz, v.client) for v in verdict.lost] == [("Q001", "a")]
    assert "version 1" in str(verdict.lost[0])
    assert not verdict.ok


def test_an_ack_for_another_value_than_the_store_holds_is_lost() -> None:
    history = [*CLEAN_HISTORY, accepted("Q002", 1, "2")]  # version 1 was "1" in the store
    assert [v.quiz for v in check(history, CLEAN_SERVER).lost] == ["Q002"]


def test_a_partial_restore_is_a_mismatch() -> None:
    """Defect 1's shape: after Redis lost its data, restore returns only the answers saved
    since (here none of Q001), although the durable store holds them."""
    server = replace(CLEAN_SERVER, restored={CAND: {"Q002": ("1", 1)}})
    verdict = check(CLEAN_HISTORY, server)
    assert {v.quiz for v in verdict.restore_mismatches} == {"Q001"}
    assert any("restore returned nothing" in str(v) for v in verdict.restore_mismatches)
    assert not verdict.lost and not verdict.false_synced


def test_a_restore_older_than_an_accepted_ack_is_a_mismatch() -> None:
    server = replace(CLEAN_SERVER, restored={CAND: {"Q001": ("y", 2), "Q002": ("1", 1)}})
    details = [str(v) for v in check(CLEAN_HISTORY, server).restore_mismatches]
    assert any("older than version 3 acknowledged accepted" in d for d in details)
    assert any("the durable store keeps version 3" in d for d in details)


def test_a_restored_answer_the_store_does_not_keep_is_a_mismatch() -> None:
    restored = {CAND: {"Q001": ("z", 3), "Q002": ("1", 1), "Q003": ("24", 1)}}
    verdict = check(CLEAN_HISTORY, replace(CLEAN_SERVER, restored=restored))
    assert [v.quiz for v in verdict.restore_mismatches] == ["Q003"]


def test_a_kept_edit_that_is_not_the_highest_accepted_version_is_a_mismatch() -> None:
    """The store keeps version 2 although version 3 was accepted (and restore agrees with the
    store): the version rules are broken even where restore and store agree."""
    kept = {(CAND, "Q001"): ("y", 2), (CAND, "Q002"): ("1", 1)}
    server = replace(CLEAN_SERVER, kept=kept, restored={CAND: {"Q001": ("y", 2), "Q002": ("1", 1)}})
    details = [str(v) for v in check(CLEAN_HISTORY[:5], server).restore_mismatches]
    assert details == [
        f"{CAND}/Q001: the store keeps version 2, the version rules make version 3 win"
    ]


def test_a_device_ending_with_other_answers_than_the_server_is_a_final_mismatch() -> None:
    history = [*CLEAN_HISTORY[:-1], Final("b", CAND, {"Q001": ("y", 2)}, False, 0.9)]
    verdict = check(history, CLEAN_SERVER)
    assert [(v.client, v.quiz) for v in verdict.final_mismatches] == [("b", "Q001"), ("b", "Q002")]


def test_a_replaced_device_is_exempt_from_the_final_comparison() -> None:
    history = [*CLEAN_HISTORY[:-1], Final("b", CAND, {"Q001": ("mine", 4)}, True, 0.9)]
    assert check(history, CLEAN_SERVER).ok


def test_synced_with_a_value_the_server_never_kept_is_false_synced() -> None:
    """Holding "w" (superseded, so in history but never accepted) while saying synced."""
    history = [*CLEAN_HISTORY, Synced("a", CAND, {"Q001": "w", "Q002": "1"}, 0.9)]
    verdict = check(history, CLEAN_SERVER)
    assert [(v.client, v.quiz) for v in verdict.false_synced] == [("a", "Q001")]


def test_two_accepted_rows_of_one_version_are_duplicate_history() -> None:
    server = replace(CLEAN_SERVER, history=(*CLEAN_SERVER.history, row("Q002", 1, "1")))
    verdict = check(CLEAN_HISTORY, server)
    assert [v.quiz for v in verdict.duplicate_history] == ["Q002"]
    assert not verdict.lost


def test_a_restore_during_the_run_missing_an_acknowledged_answer_is_a_mismatch() -> None:
    """Defect 1 as a run sees it: after Redis lost its data, a restore asked later than the
    acks of Q001 (v3) and Q002 (v1) returns only an older Q001 and no Q002, though the end is
    clean again."""
    probes = (
        Probe(CAND, 0.5, {}),  # before the acks (at 1.0 s): nothing owed
        Probe(CAND, 1.5, {"Q001": ("x", 1)}, missing=("Q002",)),
        Probe(CAND, 2.0, {"Q001": ("z", 3), "Q002": ("1", 1)}),
    )
    verdict = check(CLEAN_HISTORY, replace(CLEAN_SERVER, probes=probes))
    details = [str(v) for v in verdict.restore_mismatches]
    assert len(details) == 2, details
    assert "Q001: a restore during the run returned version 1" in details[0]
    assert "older than version 3" in details[0]
    assert "returned nothing (listed missing)" in details[1]
