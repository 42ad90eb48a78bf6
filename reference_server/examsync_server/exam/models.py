"""Validated shapes of what admins send: the plan import of seed 003 (pydantic, strict types).

Seed values are accepted as the seed writes them ("웹 로그인", "동시시험", "2024-01-15 09:00:00")
and stored normalised ("web", "simultaneous", ISO 8601 UTC); `device_policy` (ours) likewise
("단일 기기" → "single"). A datetime without an offset is
taken as UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from examsync.protocol import format_timestamp

from ..base.clock import parse_iso
from ..errors import ApiError

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=2000)]
Secret = Annotated[str, StringConstraints(min_length=4, max_length=128)]
Seconds = Annotated[int, Field(gt=0, le=7 * 24 * 3600)]


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]


def _storable_json(value: dict[str, Any]) -> dict[str, Any]:
    """Free-form JSON (`additional_info`) holding only text SQLite can store: JSON's "\\ud800"
    escape yields a lone surrogate, which is not Unicode and cannot be encoded as UTF-8."""
    pending: list[Any] = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("contains text that is not valid Unicode") from None
    return value


_LOGIN_ALIASES = {
    "web": "web",
    "웹 로그인": "web",
    "웹": "web",
    "key": "key",
    "키 로그인": "key",
    "키 인증": "key",
    "키": "key",
}
_CONDUCT_ALIASES = {
    "simultaneous": "simultaneous",
    "동시시험": "simultaneous",
    "동시": "simultaneous",
    "individual": "individual",
    "개별시험": "individual",
    "개별": "individual",
}
_DEVICE_ALIASES = {
    "single": "single",
    "단일": "single",
    "단일 기기": "single",
    "merge": "merge",
    "병합": "merge",
    "여러 기기": "merge",
}


def _alias(table: dict[str, str]) -> Any:
    def convert(value: Any) -> Any:
        return table.get(value.strip(), value) if isinstance(value, str) else value

    return BeforeValidator(convert)


LoginMethod = Annotated[Literal["web", "key"], _alias(_LOGIN_ALIASES)]
ConductType = Annotated[Literal["simultaneous", "individual"], _alias(_CONDUCT_ALIASES)]
# Whether one device at a time may save a candidate's edits, or all of them (docs/protocol.md).
DevicePolicy = Annotated[Literal["single", "merge"], _alias(_DEVICE_ALIASES)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class ExamPlanIn(_Strict):
    plan_id: Id | None = None
    exam_name: Name
    start_datetime: Annotated[UtcDatetime, Field(strict=False)]
    end_datetime: Annotated[UtcDatetime, Field(strict=False)]
    login_method: LoginMethod = "web"
    conduct_type: ConductType = "simultaneous"
    device_policy: DevicePolicy = "single"
    requires_supervisor: bool = True
    enables_cheating_detection: bool = False
    requires_camera: bool = False
    camera_capture_interval: Seconds | None = 10
    enables_ai_monitoring: bool = False
    enables_gaze_tracking: bool = False
    allows_mobile_camera: bool = False
    shuffle_questions: bool = False
    shuffle_answers: bool = False

    @model_validator(mode="after")
    def _schedule(self) -> ExamPlanIn:
        if self.end_datetime <= self.start_datetime:
            raise ValueError("end_datetime must be after start_datetime")
        if self.requires_camera and self.camera_capture_interval is None:
            raise ValueError("camera_capture_interval is required when requires_camera is true")
        return self


class StageIn(_Strict):
    stage_id: Id
    stage_name: Name
    time_limit_seconds: Seconds | None = None
    auto_move_enabled: bool = True
    exam_code: Id | None = None
    allocated_exam_time: Seconds | None = None

    @property
    def duration_seconds(self) -> int | None:
        """How long the stage runs: its time limit, else the exam time it allocates."""
        return self.time_limit_seconds or self.allocated_exam_time


class GroupIn(_Strict):
    group_id: Id
    group_name: Name
    group_description: Text | None = None
    start_datetime: Annotated[UtcDatetime | None, Field(strict=False)] = None
    end_datetime: Annotated[UtcDatetime | None, Field(strict=False)] = None

    @model_validator(mode="after")
    def _schedule(self) -> GroupIn:
        if self.start_datetime and self.end_datetime and self.end_datetime <= self.start_datetime:
            raise ValueError("end_datetime must be after start_datetime")
        return self


class CandidateIn(_Strict):
    candidate_id: Id
    candidate_name: Name
    candidate_auth_code: Secret
    grade_level: Annotated[str, StringConstraints(max_length=50)] | None = None
    email_address: Annotated[str, StringConstraints(max_length=254)] | None = None
    additional_info: Annotated[dict[str, Any], AfterValidator(_storable_json)] | None = None
    group_id: Id | None = None
    temp_answer_file_path: Text | None = None
    final_answer_file_path: Text | None = None
    capture_file_path: Text | None = None
    # The pre-issued key of key login; generated on import when absent.
    access_key: Secret | None = None


class SupervisorIn(_Strict):
    supervisor_id: Id
    supervisor_name: Name
    group_id: Id | None = None
    supervisor_auth_code: Secret


class AdvanceRequest(_Strict):
    candidateId: Id | None = None
    fromStage: Id | None = None


MAX_CANDIDATES = 100_000


class RevokeRequest(_Strict):
    """`POST …/sessions/revoke`: the people whose sessions end, or `all` of the plan's. Ids
    need not be in the plan now: a person removed from it is who most needs revoking."""

    candidates: Annotated[list[Id], Field(max_length=MAX_CANDIDATES)] = []
    supervisors: Annotated[list[Id], Field(max_length=10_000)] = []
    all: bool = False

    @model_validator(mode="after")
    def _names_someone(self) -> RevokeRequest:
        if not (self.all or self.candidates or self.supervisors):
            raise ValueError("name candidates or supervisors, or say all: true")
        return self


class EndRequest(_Strict):
    """`POST …/end`'s optional body."""

    revokeSessions: bool = False


class PlanImport(_Strict):
    exam_plan: ExamPlanIn
    stages: Annotated[list[StageIn], Field(min_length=1, max_length=100)]
    groups: Annotated[list[GroupIn], Field(max_length=10_000)] = []
    candidates: Annotated[list[CandidateIn], Field(max_length=MAX_CANDIDATES)] = []
    supervisors: Annotated[list[SupervisorIn], Field(max_length=10_000)] = []

    @model_validator(mode="after")
    def _references(self) -> PlanImport:
        for label, ids in (
            ("stage_id", [s.stage_id for s in self.stages]),
            ("group_id", [g.group_id for g in self.groups]),
            ("candidate_id", [c.candidate_id for c in self.candidates]),
            ("supervisor_id", [s.supervisor_id for s in self.supervisors]),
            ("access_key", [c.access_key for c in self.candidates if c.access_key]),
        ):
            dupes = _dupes(ids)
            if dupes and label == "access_key":
                # Keys are secrets: name the field, never echo the values.
                raise ValueError("duplicate access_key")
            if dupes:
                raise ValueError(f"duplicate {label}: {', '.join(dupes[:10])}")
        groups = {g.group_id for g in self.groups}
        people: list[CandidateIn | SupervisorIn] = [*self.candidates, *self.supervisors]
        for person in people:
            if person.group_id is not None and person.group_id not in groups:
                raise ValueError(f"unknown group_id {person.group_id!r}")
        return self


def _dupes(ids: list[str]) -> list[str]:
    seen: set[str] = set()
    dupes: set[str] = set()
    for i in ids:
        (dupes if i in seen else seen).add(i)
    return sorted(dupes)


_M = TypeVar("_M", bound=BaseModel)


def parse(model: type[_M], data: Any) -> _M:
    """Validate `data` or raise the API's 422 `invalid_request` listing every problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in err["loc"]), "problem": err["msg"]}
            for err in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise ApiError(
            422, "invalid_request", "the request body is not valid", {"problems": problems[:50]}
        ) from None


def check_id(value: str, field: str) -> str:
    """An id taken from a URL path, held to the same rule as ids in bodies."""
    if not re.fullmatch(ID_PATTERN, value):
        raise ApiError(
            422,
            "invalid_request",
            f"{field} must be 1-64 letters, digits, '_', '.' or '-'",
            {"problems": [{"field": field, "problem": "invalid id"}]},
        )
    return value


def check_time(text: str, field: str) -> str:
    """A client's ISO 8601 time with an offset, normalised to the wire form (UTC, ms), so it
    compares and sorts like every other timestamp."""
    try:
        moment = parse_iso(text)
        if moment.tzinfo is None:
            raise ValueError("no offset")
        return format_timestamp(moment.timestamp())
    except (ValueError, OverflowError, OSError):
        raise ApiError(
            422,
            "invalid_request",
            f"{field} must be an ISO 8601 time with an offset",
            {"problems": [{"field": field, "problem": "not a time with an offset"}]},
        ) from None
