"""Whose sessions an action revokes (docs/server.md, "Revoking sessions").

Tokens carry the plan, the person and their group, so a token outlives a change of any of them
unless revoked: a plan replaced without a person (or with their credentials or group changed)
revokes that person's sessions; the admin revokes named people or the whole plan; an end may
revoke the candidates' (an option, off by default: the late-save rule lets candidates flush
what they typed before the end, and a revoked SDK must sign in again to do so).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from ..store.plans import PlanSnapshot
from ..store.revocations import EVERYONE, Revocation
from .models import PlanImport, RevokeRequest

CANDIDATE = "candidate"
SUPERVISOR = "supervisor"


def requested(plan_id: str, request: RevokeRequest, before: float) -> list[Revocation]:
    """The revocations an admin's request names."""
    if request.all:
        return [Revocation(plan_id, EVERYONE, EVERYONE, before)]
    return [
        *(Revocation(plan_id, CANDIDATE, c, before) for c in dict.fromkeys(request.candidates)),
        *(Revocation(plan_id, SUPERVISOR, s, before) for s in dict.fromkeys(request.supervisors)),
    ]


def everyone_of(plan_id: str, role: str, before: float) -> Revocation:
    return Revocation(plan_id, role, EVERYONE, before)


def replaced(old: PlanSnapshot, new: PlanImport, before: float) -> list[Revocation]:
    """The people whose sessions a replacement ends: gone from the plan, or with another
    group or credential (an access key left out is kept, so it is no change)."""
    plan_id = old.plan["plan_id"]
    candidates = {
        c.candidate_id: (c.group_id, c.candidate_auth_code, c.access_key) for c in new.candidates
    }
    supervisors = {s.supervisor_id: (s.group_id, s.supervisor_auth_code) for s in new.supervisors}
    found = [
        Revocation(plan_id, CANDIDATE, row["candidate_id"], before)
        for row in old.candidates
        if _changed(candidates.get(row["candidate_id"]), row, "candidate_auth_code", "access_key")
    ]
    found += [
        Revocation(plan_id, SUPERVISOR, row["supervisor_id"], before)
        for row in old.supervisors
        if _changed(supervisors.get(row["supervisor_id"]), row, "supervisor_auth_code")
    ]
    return found


def _changed(new: tuple[Any, ...] | None, old: dict[str, Any], *secrets: str) -> bool:
    """Whether a person's group or secrets differ in `new` (None: they are gone)."""
    if new is None:
        return True
    group, *given = new
    if group != old["group_id"]:
        return True
    return any(n is not None and n != old[name] for n, name in zip(given, secrets, strict=True))


def restamped(revocations: Iterable[Revocation], before: float) -> list[Revocation]:
    """The same revocations, refusing the sessions signed before `before` instead."""
    return [replace(r, revoked_before=before) for r in revocations]


def summary(revocations: Iterable[Revocation]) -> dict[str, Any]:
    """What an answer says it revoked."""
    found = list(revocations)
    return {
        "all": any(r.role == EVERYONE for r in found),
        "candidates": sorted(r.subject_id for r in found if r.role == CANDIDATE and r.subject_id),
        "supervisors": sorted(r.subject_id for r in found if r.role == SUPERVISOR and r.subject_id),
        "everyCandidate": any(r.role == CANDIDATE and r.subject_id == EVERYONE for r in found),
    }
