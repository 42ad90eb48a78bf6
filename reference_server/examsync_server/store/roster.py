"""A plan's candidates as the rooms outside the exam lifecycle read them from SQLite: the
operator's list with credentials, the groups whose supervisors hear of an examinee, and a
supervisor's examinees with where each stands.

A supervisor without a group (`group_id` None) oversees the whole plan.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from .sqlite import Database


@dataclass(frozen=True, slots=True)
class Examinee:
    """One row of a supervisor's snapshot, as SQLite holds it."""

    candidate_id: str
    name: str
    group_id: str | None
    status: str
    current_stage: str | None  # the plan's clock in a simultaneous exam
    answered: int  # answers held
    last_save: str | None  # when the last save was committed


class Roster:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def credentials(self, plan_id: str) -> list[dict[str, Any]]:
        """Every candidate of the plan with their credentials, for the operator to hand out."""
        rows = await self.db.fetch_all(
            "SELECT candidate_id, candidate_name, group_id, candidate_auth_code, access_key,"
            " status, current_stage_id FROM exam_candidate WHERE plan_id = ?"
            " ORDER BY candidate_id",
            (plan_id,),
        )
        return [dict(r) for r in rows]

    async def groups(self, candidate_ids: Collection[str]) -> dict[tuple[str, str], str | None]:
        """(plan, candidate) → group of the candidates named, at least one (candidate ids are
        global: no plan is needed to find them)."""
        ids = sorted(candidate_ids)
        rows = await self.db.fetch_all(
            "SELECT plan_id, candidate_id, group_id FROM exam_candidate"
            f" WHERE candidate_id IN ({','.join('?' * len(ids))})",
            ids,
        )
        return {(r["plan_id"], r["candidate_id"]): r["group_id"] for r in rows}

    async def examinee_ids(self, plan_id: str, group_id: str | None) -> list[str]:
        """The ids of a supervisor's examinees."""
        sql, params = _in_group(plan_id, group_id)
        found = await self.db.fetch_all(f"SELECT candidate_id FROM exam_candidate {sql}", params)
        return [r["candidate_id"] for r in found]

    async def examinees(self, plan_id: str, group_id: str | None) -> list[Examinee]:
        """A supervisor's examinees: status, stage, answers held, last save."""
        sql, params = _in_group(plan_id, group_id, "c.")
        rows = await self.db.fetch_all(
            "SELECT c.candidate_id, c.candidate_name, c.group_id, c.status,"
            " CASE WHEN p.conduct_type = 'simultaneous' THEN p.current_stage_id"
            " ELSE c.current_stage_id END AS current_stage,"
            " (SELECT COUNT(*) FROM answer_latest a WHERE a.candidate_id = c.candidate_id"
            "  AND a.plan_id = c.plan_id) AS answered,"
            " (SELECT MAX(s.last_sync) FROM answer_sheet s WHERE s.candidate_id = c.candidate_id"
            "  AND s.plan_id = c.plan_id) AS last_save"
            f" FROM exam_candidate c JOIN exam_plan p ON p.plan_id = c.plan_id {sql}"
            " ORDER BY c.candidate_id",
            params,
        )
        return [
            Examinee(
                r["candidate_id"],
                r["candidate_name"],
                r["group_id"],
                r["status"],
                r["current_stage"],
                r["answered"],
                r["last_save"],
            )
            for r in rows
        ]


def _in_group(plan_id: str, group_id: str | None, prefix: str = "") -> tuple[str, list[str]]:
    """The WHERE clause for a supervisor's examinees: their group, or the whole plan."""
    if group_id is None:
        return f"WHERE {prefix}plan_id = ?", [plan_id]
    return f"WHERE {prefix}plan_id = ? AND {prefix}group_id = ?", [plan_id, group_id]
