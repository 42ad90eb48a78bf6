"""What the durable store refuses, in its own terms; the rooms above say it to clients.

    StoreError
     ├── NotFound   a row the caller named does not exist
     │    └── DeadLetterNotFound   ids asked for that are no unreplayed dead letters
     ├── Conflict   a value that must be unique is already taken
     └── DamagedAnswer   an answer's kept value is gone or no longer matches its digest

Raised inside a transaction, they roll it back like any exception. A broken database raises
the driver's own error, caught above as `store.sqlite.DatabaseError`.
"""

from __future__ import annotations


class StoreError(Exception):
    """Anything the store refuses (not a broken database: that is the driver's error)."""


class NotFound(StoreError):
    def __init__(self, what: str, **key: str) -> None:
        super().__init__(f"{what.replace('_', ' ')} not found")
        self.what = what  # "plan", "candidate"
        self.key = key  # the ids it was looked up by, e.g. {"plan_id": "PLAN202401"}


class Conflict(StoreError):
    def __init__(self, field: str, ids: list[str], message: str) -> None:
        super().__init__(message)
        self.field = field  # the column, e.g. "candidate_id"
        self.ids = ids  # the values taken; empty when they must not be shown (secrets)


class DeadLetterNotFound(NotFound):
    """Some ids asked for are not unreplayed dead letters of the plan."""

    def __init__(self, plan_id: str, ids: list[int]) -> None:
        super().__init__("dead_letter", plan_id=plan_id)
        self.plan_id = plan_id
        self.ids = ids  # the ids not found, sorted


class DamagedAnswer(StoreError):
    """An answer's kept value could not be read back intact (its history row altered or gone)."""

    def __init__(self, candidate_id: str, exam_code: str, quiz_code: str) -> None:
        super().__init__(f"the kept value of {candidate_id}/{exam_code}/{quiz_code} is damaged")
        self.candidate_id = candidate_id
        self.exam_code = exam_code
        self.quiz_code = quiz_code
