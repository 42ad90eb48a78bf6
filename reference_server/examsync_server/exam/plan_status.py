"""The plan lifecycle as data: its states, what every action does in each, and the 409s.

    created ──prepare──▶ ready ──start──▶ in_progress ──end──▶ completed
       ▲                   │
       └──replace / new package (a prepared plan must be prepared again)

Everything that decides whether a plan may be acted on lives in `RULES`, one row per action
with an outcome per status: `Goes(to)` (done; the plan is then `to`), `Repeat(flag)` (already
done: answered as a success marked `flag`, nothing done twice) or `Refused(code)` (a 409). The
callers ask `outcome()` / `require()`; SQL and Lua get the values from the enums, never as
literals (tests/server/test_fences.py), and docs/server.md's table is `markdown_table()`
(tests/server/test_plan_status.py).

An examinee has a status of their own (`exam_candidate.status`, `exam_candidate:{id}:status`)
spelt with three of the same words: `CandidateStatus`, so the two are never confused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

from ..errors import ApiError


class PlanStatus(StrEnum):
    """`exam_plan.status` and the `status` of `exam_plan:{plan_id}` (the same strings)."""

    CREATED = "created"
    READY = "ready"  # prepared (seed 000)
    IN_PROGRESS = "in_progress"  # started
    COMPLETED = "completed"  # ended (seed 001)


class CandidateStatus(StrEnum):
    """`exam_candidate.status` and the `status` of `exam_candidate:{candidate_id}:status`."""

    READY = "ready"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"  # past the last stage, or the plan ended


class Action(Enum):
    """What is asked of a plan; the value is the verb of its refusal ("cannot prepare plan …")."""

    REPLACE = "replace"
    UPLOAD_PACKAGE = "replace the package of"
    PREPARE = "prepare"
    START = "start"
    END = "end"
    MOVE_STAGE = "move the stage of"
    START_EXAMINEE = "start an examinee of"
    SIGN_IN = "sign in to"
    SAVE = "save to"


@dataclass(frozen=True, slots=True)
class Goes:
    """Allowed: done, and the plan is then `to` (its own status for work within a state)."""

    to: PlanStatus


@dataclass(frozen=True, slots=True)
class Repeat:
    """Already done: a success with `flag: true`, so a retry after a lost response is safe."""

    flag: str


_CANNOT = "cannot {verb} plan {plan_id}: it is {status}"


@dataclass(frozen=True, slots=True)
class Refused:
    """A 409 with `code`; `message` may name {verb}, {plan_id} and {status}, and the details
    carry the fields named in `details` (the values the message may name, `action` the verb)."""

    code: str
    message: str = _CANNOT
    details: tuple[str, ...] = ("plan_id", "status", "action")

    def error(self, action: Action, plan_id: str, status: str, **extra: Any) -> ApiError:
        values = {"plan_id": plan_id, "status": status, "action": action.value}
        return ApiError(
            409,
            self.code,
            self.message.format(verb=action.value, plan_id=plan_id, status=status),
            {**{name: values[name] for name in self.details}, **extra},
        )


Outcome = Goes | Repeat | Refused


@dataclass(frozen=True, slots=True)
class Rule:
    call: str  # how the action is asked, as docs/server.md's table names it
    outcomes: Mapping[PlanStatus, Outcome]


_C, _R, _P, _D = (
    PlanStatus.CREATED,
    PlanStatus.READY,
    PlanStatus.IN_PROGRESS,
    PlanStatus.COMPLETED,
)


def _locked(what: str) -> Refused:
    return Refused("plan_locked", "plan {plan_id} is {status}; " + what, ("plan_id", "status"))


_NOT_PREPARED = Refused("plan_not_prepared")
_NOT_STARTED = Refused("plan_not_started")
_COMPLETED = Refused("plan_completed")
_WORKING: Mapping[PlanStatus, Outcome] = {
    _C: _NOT_PREPARED,
    _R: _NOT_STARTED,
    _P: Goes(_P),
    _D: _COMPLETED,
}
_NOT_OPEN = Refused("plan_not_started", "the exam has not started", ())

RULES: Mapping[Action, Rule] = {
    Action.REPLACE: Rule(
        "`PUT /plans/{id}` (replace)",
        {
            _C: Goes(_C),
            _R: Goes(_C),
            _P: _locked("it can no longer be replaced"),
            _D: _locked("it can no longer be replaced"),
        },
    ),
    Action.UPLOAD_PACKAGE: Rule(
        "`PUT /plans/{id}/package`",
        {
            _C: Goes(_C),
            _R: Goes(_C),
            _P: _locked("its package can no longer change"),
            _D: _locked("its package can no longer change"),
        },
    ),
    # Again on a prepared plan: the same work, which rewrites (repairs) its Redis keys.
    Action.PREPARE: Rule(
        "`POST …/prepare`",
        {_C: Goes(_R), _R: Goes(_R), _P: Refused("plan_in_progress"), _D: _COMPLETED},
    ),
    Action.START: Rule(
        "`POST …/start`",
        {_C: _NOT_PREPARED, _R: Goes(_P), _P: Repeat("alreadyStarted"), _D: _COMPLETED},
    ),
    Action.END: Rule(
        "`POST …/end`",
        {_C: _NOT_PREPARED, _R: _NOT_STARTED, _P: Goes(_D), _D: Repeat("alreadyCompleted")},
    ),
    # The stage timer's moves too: where they are refused, the timer just does not move.
    Action.MOVE_STAGE: Rule("`POST …/advance`, `POST /me/advance`, stage timers", _WORKING),
    Action.START_EXAMINEE: Rule("`POST /me/start`", _WORKING),
    Action.SIGN_IN: Rule(
        "`POST /sessions`",
        {
            _C: Refused("plan_not_prepared", "this exam is not open yet", ("plan_id",)),
            _R: Goes(_R),
            _P: Goes(_P),
            _D: Goes(_D),
        },
    ),
    # Saves, captures and log batches, checked in Redis by the plan queue's script. After the
    # end, what was made before it is still taken within the grace window (plan_queue.py).
    Action.SAVE: Rule(
        "saves, captures, logs",
        {
            _C: _NOT_OPEN,
            _R: _NOT_OPEN,
            _P: Goes(_P),
            _D: Refused("exam_completed", "the exam has ended", ()),
        },
    ),
}


def outcome(status: str, action: Action) -> Outcome:
    """What `action` does to a plan that is `status` (a PlanStatus or its string)."""
    return RULES[action].outcomes[PlanStatus(status)]


def allows(status: str, action: Action) -> bool:
    """Whether `action` is done (not refused, not a repeat) in `status`."""
    return isinstance(outcome(status, action), Goes)


def statuses_allowing(action: Action) -> tuple[PlanStatus, ...]:
    return tuple(s for s in PlanStatus if allows(s, action))


def require(action: Action, plan_id: str, status: str) -> Goes | Repeat:
    """The outcome of `action` in `status`, or its 409 raised."""
    found = outcome(status, action)
    if isinstance(found, Refused):
        raise found.error(action, plan_id, status)
    return found


def transition(action: Action, plan_id: str, status: str) -> PlanStatus:
    """Where `action` takes a plan that is `status`, or its 409 raised; for the actions that
    have no repeat."""
    found = require(action, plan_id, status)
    if not isinstance(found, Goes):
        raise ValueError(f"{action.name} in {status} is a repeat; ask require()")
    return found.to


def refusal(action: Action, plan_id: str, status: str, **extra: Any) -> ApiError:
    """The 409 for `action` in `status`, which the table refuses; `extra` joins its details."""
    found = outcome(status, action)
    if not isinstance(found, Refused):
        raise ValueError(f"{action.name} is not refused in {status}")
    return found.error(action, plan_id, status, **extra)


def locked(status: str) -> bool:
    """A plan whose stages and package can no longer change (it has started)."""
    return not allows(status, Action.REPLACE) and not allows(status, Action.UPLOAD_PACKAGE)


def markdown_table() -> str:
    """docs/server.md's lifecycle table, written from `RULES`."""

    def cell(status: PlanStatus, found: Outcome) -> str:
        if isinstance(found, Goes):
            return "allowed" if found.to == status else f"→ `{found.to}`"
        if isinstance(found, Repeat):
            return f"`200 {found.flag}`"
        return f"`409 {found.code}`"

    lines = [
        "| call | " + " | ".join(f"`{s}`" for s in PlanStatus) + " |",
        "| --- |" + " --- |" * len(PlanStatus),
    ]
    for rule in RULES.values():
        cells = [cell(s, rule.outcomes[s]) for s in PlanStatus]
        lines.append(f"| {rule.call} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
