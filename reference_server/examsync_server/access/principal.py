"""Who a session token speaks for: the claims it carries, once verified (tokens.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["candidate", "supervisor"]


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    plan_id: str
    subject_id: str  # candidate_id or supervisor_id
    group_id: str | None
    # The device signed in from ("" for a supervisor, and for a token issued before devices
    # were named: no device check refuses it).
    device_id: str = ""
    # When the session was signed (epoch seconds; whole seconds for a token issued before
    # tokens said it to the millisecond). Not part of who it is.
    issued_at: float = field(default=0.0, compare=False)
