"""Who a `socket_queue` event is for, read from the entry's routing fields.

One rule serves both deliveries: fan-out asks the registry for the sockets of an audience
(indexed, for a live event), and a replay asks whether one principal is in it.

- `audience=supervisors`: the supervisors of `groupId` (seed 004's examinee events, alerts);
- a `candidateId`: that candidate and the supervisors of `groupId` (their stage changes);
- otherwise everyone in the plan.

A supervisor with no group oversees the whole plan and is in every supervisors' audience.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..access.tokens import Principal


@dataclass(frozen=True, slots=True)
class Audience:
    plan_id: str
    candidate_id: str | None
    group_id: str | None
    supervisors_only: bool

    @classmethod
    def of(cls, fields: Mapping[str, str]) -> Audience:
        return cls(
            plan_id=fields.get("planId", ""),
            candidate_id=fields.get("candidateId") or None,
            group_id=fields.get("groupId") or None,
            supervisors_only=fields.get("audience") == "supervisors",
        )

    @property
    def whole_plan(self) -> bool:
        return not self.supervisors_only and self.candidate_id is None

    def includes(self, who: Principal) -> bool:
        if who.plan_id != self.plan_id:
            return False
        if self.whole_plan:
            return True
        if who.role == "supervisor":
            return who.group_id is None or (
                self.group_id is not None and who.group_id == self.group_id
            )
        return not self.supervisors_only and who.subject_id == self.candidate_id


def event_frame(position: str, fields: Mapping[str, str]) -> dict[str, Any]:
    """The frame a socket gets for a `socket_queue` entry: its `data`, with the entry's id as
    `position`, from which a client that reconnects asks for what it missed."""
    message = json.loads(fields.get("data", "{}"))
    if not isinstance(message, dict):
        raise ValueError("data is not a JSON object")
    message["position"] = position
    return message
