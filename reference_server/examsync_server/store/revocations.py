"""Revoked sessions in SQLite: who, of which plan, signed before when (migration 0008).

A record names one person (`role`, `subject_id`), every person of a role (`subject_id` ""), or
the whole plan (both ""). Recording again keeps the later time: a revocation only ever widens.
The in-memory check and its upkeep are access/revocations.py's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .sqlite import Database, Tx

EVERYONE = ""  # as `role` and `subject_id`: every role, every person of the role


@dataclass(frozen=True, slots=True)
class Revocation:
    plan_id: str
    role: str  # "candidate", "supervisor", or EVERYONE
    subject_id: str  # or EVERYONE
    revoked_before: float  # epoch seconds: sessions signed before this are refused

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.plan_id, self.role, self.subject_id)


async def record(tx: Tx, revocations: Sequence[Revocation], reason: str, at: str) -> None:
    """Write `revocations` inside the caller's transaction (the action that revokes)."""
    await tx.executemany(
        "INSERT INTO session_revocation (plan_id, role, subject_id, revoked_before, reason, at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (plan_id, role, subject_id) DO UPDATE SET"
        " revoked_before = max(revoked_before, excluded.revoked_before),"
        " reason = excluded.reason, at = excluded.at",
        [(r.plan_id, r.role, r.subject_id, r.revoked_before, reason, at) for r in revocations],
    )


async def since(db: Database, after: float) -> list[Revocation]:
    """The revocations of sessions signed after `after` (older ones can no longer be alive)."""
    found = await db.fetch_all(
        "SELECT plan_id, role, subject_id, revoked_before FROM session_revocation"
        " WHERE revoked_before > ?",
        (after,),
    )
    return [
        Revocation(r["plan_id"], r["role"], r["subject_id"], float(r["revoked_before"]))
        for r in found
    ]
