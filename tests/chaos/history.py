"""What a chaos run records, as data: each client's history (JSONL, one record a line) and the
server's final state. No I/O here: the client process writes the lines, the harness reads the
server, and the checker (checker.py) judges the two.

A client's lines, each a JSON object with its ``kind``:

- ``edit``: the candidate typed ``value`` into ``quiz`` (the device's own ``version``);
- ``ack``: the server keeps the device's edit (``status`` accepted or duplicate) as
  ``version``; ``digest`` is the receipt's value SHA-256;
- ``overridden``: a save was superseded: the device lost ``lost_value`` and holds the server's
  ``value`` and ``version``;
- ``failure``: a save attempt failed (``error``, the ``attempt`` count);
- ``synced``: the device said "synced", holding ``held`` (quiz code → value) at that moment;
- ``final``: the device's answers (quiz code → [value, version]) after the last flush, and
  whether it ended ``replaced`` (another device took the exam over).

Every line also has ``client`` (the device's name in the run), ``candidate`` and ``t`` (epoch
seconds when it happened).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Answer = tuple[str, int]  # (value, version)
AnswerKey = tuple[str, str]  # (candidate id, quiz code)


@dataclass(frozen=True, slots=True)
class Edit:
    client: str
    candidate: str
    quiz: str
    value: str
    version: int
    t: float


@dataclass(frozen=True, slots=True)
class Ack:
    client: str
    candidate: str
    quiz: str
    status: str  # "accepted" or "duplicate"
    version: int
    digest: str  # the receipt's value SHA-256
    t: float


@dataclass(frozen=True, slots=True)
class Overridden:
    client: str
    candidate: str
    quiz: str
    lost_value: str
    value: str
    version: int
    t: float


@dataclass(frozen=True, slots=True)
class Failure:
    client: str
    candidate: str
    error: str
    attempt: int
    t: float


@dataclass(frozen=True, slots=True)
class Synced:
    client: str
    candidate: str
    held: Mapping[str, str]  # quiz code -> value
    t: float


@dataclass(frozen=True, slots=True)
class Final:
    client: str
    candidate: str
    answers: Mapping[str, Answer]
    replaced: bool
    t: float


Record = Edit | Ack | Overridden | Failure | Synced | Final


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One row of the durable store's `answer_history`."""

    candidate: str
    quiz: str
    version: int
    digest: str  # SHA-256 of the value
    result: str  # "accepted" or "superseded"


@dataclass(frozen=True, slots=True)
class Probe:
    """A restore through the API during the run: what it returned for ``candidate``, asked at
    ``t`` (epoch seconds, before the request went out)."""

    candidate: str
    t: float
    answers: Mapping[str, Answer]
    missing: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServerState:
    """The server at the end of a run: the durable store (`kept`: the `answer` view, `history`:
    `answer_history`), what a restore through the API returned for each candidate then, and
    the restores asked during the run (``probes``)."""

    kept: Mapping[AnswerKey, Answer]
    history: tuple[HistoryRow, ...]
    restored: Mapping[str, Mapping[str, Answer]]  # candidate -> quiz code -> answer
    probes: tuple[Probe, ...] = ()


def to_line(record: Record) -> str:
    """The JSONL line of a record (its fields and ``kind``)."""
    data: dict[str, Any] = {"kind": _KINDS_BY_TYPE[type(record)]}
    for name in record.__slots__:
        value = getattr(record, name)
        data[name] = dict(value) if isinstance(value, Mapping) else value
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


def parse_lines(lines: Iterable[str]) -> list[Record]:
    """The records of JSONL lines (blank lines skipped; an unknown kind is an error)."""
    records: list[Record] = []
    for line in lines:
        if line.strip():
            records.append(parse_record(json.loads(line)))
    return records


def parse_record(data: Mapping[str, Any]) -> Record:
    fields = {k: v for k, v in data.items() if k != "kind"}
    kind = _TYPES_BY_KIND[data["kind"]]
    if kind is Final:
        fields["answers"] = {q: (a[0], int(a[1])) for q, a in fields["answers"].items()}
    return kind(**fields)


_TYPES_BY_KIND: dict[str, type[Record]] = {
    "edit": Edit,
    "ack": Ack,
    "overridden": Overridden,
    "failure": Failure,
    "synced": Synced,
    "final": Final,
}
_KINDS_BY_TYPE = {kind: name for name, kind in _TYPES_BY_KIND.items()}
