"""Who is connected to this process: sockets indexed by plan, candidate and supervisor group.

Fan-out asks the registry for the sockets an event is for and hands them to
`websockets.broadcast`, which encodes once and writes to each without a task per socket. It
also notes here how far it has delivered each stream: a socket added now gets, live, exactly
what comes after that position.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from websockets.asyncio.server import ServerConnection

from ..access.tokens import Principal
from .audience import Audience

K = TypeVar("K")


@dataclass
class Registry:
    _principals: dict[ServerConnection, Principal] = field(default_factory=dict)
    _plans: defaultdict[str, set[ServerConnection]] = field(
        default_factory=lambda: defaultdict(set)
    )
    _candidates: defaultdict[tuple[str, str], set[ServerConnection]] = field(
        default_factory=lambda: defaultdict(set)
    )
    _supervisors: defaultdict[tuple[str, str | None], set[ServerConnection]] = field(
        default_factory=lambda: defaultdict(set)
    )
    # stream → id of the last entry fan-out has delivered to this process's sockets
    delivered: dict[str, str] = field(default_factory=dict)
    # plan → end timestamp, for the plans whose exam_end fan-out delivered in this process
    ended: dict[str, str | None] = field(default_factory=dict)

    def add(self, conn: ServerConnection, who: Principal) -> None:
        self._principals[conn] = who
        self._plans[who.plan_id].add(conn)
        if who.role == "candidate":
            self._candidates[(who.plan_id, who.subject_id)].add(conn)
        else:
            self._supervisors[(who.plan_id, who.group_id)].add(conn)

    def remove(self, conn: ServerConnection) -> None:
        who = self._principals.pop(conn, None)
        if who is None:
            return
        _discard(self._plans, who.plan_id, conn)
        if who.role == "candidate":
            _discard(self._candidates, (who.plan_id, who.subject_id), conn)
        else:
            _discard(self._supervisors, (who.plan_id, who.group_id), conn)

    def __len__(self) -> int:
        return len(self._principals)

    def plan(self, plan_id: str) -> Iterable[ServerConnection]:
        return tuple(self._plans.get(plan_id, ()))

    def candidate(self, plan_id: str, candidate_id: str) -> Iterable[ServerConnection]:
        return tuple(self._candidates.get((plan_id, candidate_id), ()))

    def targets(self, audience: Audience) -> Iterable[ServerConnection]:
        """The sockets `audience` names (the rule is in audience.py)."""
        if audience.whole_plan:
            return self.plan(audience.plan_id)
        found = list(self.supervisors(audience.plan_id, audience.group_id))
        if not audience.supervisors_only and audience.candidate_id is not None:
            found += self.candidate(audience.plan_id, audience.candidate_id)
        return found

    def supervisors(self, plan_id: str, group_id: str | None) -> Iterable[ServerConnection]:
        """The supervisors of one group; a supervisor with no group oversees the whole plan."""
        found = set(self._supervisors.get((plan_id, None), ()))
        if group_id is not None:
            found |= self._supervisors.get((plan_id, group_id), set())
        return tuple(found)


def _discard(index: defaultdict[K, set[ServerConnection]], key: K, conn: ServerConnection) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(conn)
        if not members:
            del index[key]
