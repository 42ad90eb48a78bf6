"""The zero-loss checker: judges a chaos run's history (what every client was told) against
the server's final state. Sans-I/O: records in (history.py), a :class:`Verdict` out.

The properties, each a list of violations in the verdict:

- ``lost``: every edit acknowledged ``accepted`` is in the durable store (an `answer_history`
  row of that answer, version and value digest, judged accepted).
- ``restore_mismatches``: for each answer, restore returns what the durable store keeps (never
  less: a kept answer missing from the restore, or an older version, is a mismatch), the kept
  edit is the one the version rules make win (the accepted history row of the highest
  version), and never a version older than one acknowledged accepted — at the end, and in
  every restore asked during the run (a probe) of each edit acknowledged before it was asked.
- ``final_mismatches``: each device's final answers (after flushing with the network healed)
  equal what the server keeps for its candidate; a device that ended replaced (another device
  took the exam over under `single`) holds edits the server refused by design, and is exempt.
- ``false_synced``: whenever a device said "synced", every value it held was one the server
  kept (an accepted history row of that answer with that value's digest).
- ``duplicate_history``: no two accepted history rows of one answer carry the same version
  (each accepted edit gets a new version; a save applied twice must add nothing).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from examsync.protocol import value_sha256

from .history import (
    Ack,
    Answer,
    AnswerKey,
    Final,
    HistoryRow,
    Probe,
    Record,
    ServerState,
    Synced,
)


@dataclass(frozen=True, slots=True)
class Violation:
    candidate: str
    quiz: str
    detail: str
    client: str = ""
    at: float | None = None  # when it was seen (a restore during the run: when it was asked)

    def __str__(self) -> str:
        who = f"{self.client} " if self.client else ""
        return f"{who}{self.candidate}/{self.quiz}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Verdict:
    lost: tuple[Violation, ...]
    restore_mismatches: tuple[Violation, ...]
    final_mismatches: tuple[Violation, ...]
    false_synced: tuple[Violation, ...]
    duplicate_history: tuple[Violation, ...]
    acks: int  # edits acknowledged accepted

    @property
    def ok(self) -> bool:
        return not any(self.problems().values())

    def problems(self) -> dict[str, tuple[Violation, ...]]:
        return {
            "lost": self.lost,
            "restore mismatches": self.restore_mismatches,
            "final mismatches": self.final_mismatches,
            "false synced": self.false_synced,
            "duplicate history": self.duplicate_history,
        }


def check(history: Iterable[Record], server: ServerState) -> Verdict:
    records = list(history)
    accepted_acks = [r for r in records if isinstance(r, Ack) and r.status == "accepted"]
    accepted_rows = _accepted_rows(server.history)
    return Verdict(
        lost=tuple(_lost(accepted_acks, accepted_rows)),
        restore_mismatches=(
            *_restore_mismatches(accepted_acks, accepted_rows, server),
            *_probe_mismatches(accepted_acks, server.probes),
        ),
        final_mismatches=tuple(
            _final_mismatches([r for r in records if isinstance(r, Final)], server)
        ),
        false_synced=tuple(
            _false_synced([r for r in records if isinstance(r, Synced)], accepted_rows)
        ),
        duplicate_history=tuple(_duplicate_history(server.history)),
        acks=len(accepted_acks),
    )


def _accepted_rows(rows: Iterable[HistoryRow]) -> dict[AnswerKey, dict[int, set[str]]]:
    """Accepted history rows: answer -> version -> value digests."""
    accepted: dict[AnswerKey, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    for row in rows:
        if row.result == "accepted":
            accepted[(row.candidate, row.quiz)][row.version].add(row.digest)
    return accepted


def _lost(
    acks: Iterable[Ack], accepted: dict[AnswerKey, dict[int, set[str]]]
) -> Iterable[Violation]:
    for ack in acks:
        if ack.digest not in accepted.get((ack.candidate, ack.quiz), {}).get(ack.version, ()):
            yield Violation(
                ack.candidate,
                ack.quiz,
                f"acknowledged accepted as version {ack.version} but not in the durable store",
                ack.client,
            )


def _restore_mismatches(
    acks: Iterable[Ack], accepted: dict[AnswerKey, dict[int, set[str]]], server: ServerState
) -> Iterable[Violation]:
    for (candidate, quiz), (value, version) in sorted(server.kept.items()):
        restored = server.restored.get(candidate, {}).get(quiz)
        if restored != (value, version):
            yield Violation(
                candidate,
                quiz,
                f"restore returned {_show(restored)}, "
                f"the durable store keeps {_show((value, version))}",
            )
        versions = accepted.get((candidate, quiz), {})
        if versions and (version, value_sha256(value)) != _winner(versions):
            yield Violation(
                candidate,
                quiz,
                f"the store keeps version {version}, the version rules make "
                f"version {max(versions)} win",
            )
    for candidate, answers in sorted(server.restored.items()):
        for quiz in sorted(set(answers) - {q for c, q in server.kept if c == candidate}):
            yield Violation(candidate, quiz, "restore returned an answer the store does not keep")
    for ack in acks:
        restored = server.restored.get(ack.candidate, {}).get(ack.quiz)
        if restored is None or restored[1] < ack.version:
            yield Violation(
                ack.candidate,
                ack.quiz,
                f"restore returned {_show(restored)}, older than version {ack.version} "
                "acknowledged accepted",
                ack.client,
            )


def _probe_mismatches(acks: Iterable[Ack], probes: Iterable[Probe]) -> Iterable[Violation]:
    """A restore asked after an ack returns that version or a later one (acks come in time
    order per candidate, so each probe only needs the newest of each answer before it)."""
    by_candidate: dict[str, list[Ack]] = defaultdict(list)
    for ack in acks:
        by_candidate[ack.candidate].append(ack)
    for probe in probes:
        newest: dict[str, Ack] = {}
        for ack in by_candidate[probe.candidate]:
            if ack.t < probe.t and ack.version >= newest.get(ack.quiz, ack).version:
                newest[ack.quiz] = ack
        for quiz, ack in sorted(newest.items()):
            got = probe.answers.get(quiz)
            if got is None or got[1] < ack.version:
                listed = " (listed missing)" if quiz in probe.missing else ""
                yield Violation(
                    probe.candidate,
                    quiz,
                    f"a restore during the run returned {_show(got)}{listed}, older than "
                    f"version {ack.version} acknowledged accepted {probe.t - ack.t:.2f} s before",
                    ack.client,
                    probe.t,
                )


def _winner(versions: dict[int, set[str]]) -> tuple[int, str]:
    top = max(versions)
    return top, min(versions[top])


def _final_mismatches(finals: Iterable[Final], server: ServerState) -> Iterable[Violation]:
    for final in finals:
        if final.replaced:
            continue
        kept = {q: a for (c, q), a in server.kept.items() if c == final.candidate}
        for quiz in sorted(set(kept) | set(final.answers)):
            if final.answers.get(quiz) != kept.get(quiz):
                yield Violation(
                    final.candidate,
                    quiz,
                    f"the device ended with {_show(final.answers.get(quiz))}, "
                    f"the server keeps {_show(kept.get(quiz))}",
                    final.client,
                )


def _false_synced(
    moments: Iterable[Synced], accepted: dict[AnswerKey, dict[int, set[str]]]
) -> Iterable[Violation]:
    for moment in moments:
        for quiz, value in sorted(moment.held.items()):
            digests = accepted.get((moment.candidate, quiz), {}).values()
            if not any(value_sha256(value) in d for d in digests):
                yield Violation(
                    moment.candidate,
                    quiz,
                    f"said synced holding {value!r}, which the server never kept",
                    moment.client,
                )


def _duplicate_history(rows: Iterable[HistoryRow]) -> Iterable[Violation]:
    seen: set[tuple[str, str, int]] = set()
    for row in rows:
        if row.result != "accepted":
            continue
        key = (row.candidate, row.quiz, row.version)
        if key in seen:
            yield Violation(row.candidate, row.quiz, f"two accepted rows of version {row.version}")
        seen.add(key)


def _show(answer: Answer | None) -> str:
    return "nothing" if answer is None else f"version {answer[1]} ({answer[0][:24]!r})"
