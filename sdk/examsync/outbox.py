"""The engine's value objects: its settings, a save it hands a driver to send, and the record
of a batch awaiting its answer (the engine itself is ``engine.py``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from .answers import SentEdit
from .backoff import Backoff
from .messages import Device, SavePayload

__all__ = ["Batch", "EngineConfig", "SaveRequest"]


@dataclass(frozen=True, slots=True)
class EngineConfig:
    plan_id: str  # examId on the wire
    exam_code: str  # testCode
    candidate_id: str  # userId
    device: Device = Device(type="PC", browser="", os="")
    status: str = "in_progress"
    max_batch: int = 100  # answers per save request
    max_navigation: int = 500  # unacknowledged navigation steps kept (oldest dropped)
    request_timeout: float = 30.0  # a save without an answer by then counts as failed
    backoff: Backoff = field(default_factory=Backoff)

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_navigation < 0 or not self.request_timeout > 0:
            raise ValueError(f"invalid engine config {self!r}")

    @property
    def identity(self) -> str:
        return json.dumps([self.plan_id, self.exam_code, self.candidate_id])


@dataclass(frozen=True, slots=True)
class SaveRequest:
    """A save to send: ``body`` (canonical JSON of ``payload``) to ``POST /api/v1/answers``."""

    batch_id: int
    payload: SavePayload
    body: bytes
    deadline: float


@dataclass(frozen=True, slots=True)
class Batch:
    """A save sent and not yet answered (or answered late): what it carried, and when."""

    batch_id: int
    sent: Mapping[str, SentEdit]
    navigation_upto: int  # sequence number of the last navigation step carried
    sent_at: float
    deadline: float
