"""Logging in (POST /api/v1/sessions): candidates by auth code or key, supervisors by auth code.

Which plan a person belongs to is checked here once; afterwards the signed token carries it.
Unknown ids and wrong codes get the same answer, so ids cannot be probed.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints

from ..base.clock import iso, utc_now
from ..errors import ApiError, invalid_request
from ..exam.lifecycle import Lifecycle
from ..exam.models import Id, parse
from ..exam.views import public_plan, public_stage
from ..store.sqlite import Database
from .tokens import Principal, Tokens

Code = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class _Login(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    planId: Id


class WebLogin(_Login):
    candidateId: Id
    authCode: Code


class KeyLogin(_Login):
    key: Code


class SupervisorLogin(_Login):
    supervisorId: Id
    authCode: Code


def _bad_credentials() -> ApiError:
    return ApiError(401, "invalid_credentials", "the id or code is not valid for this plan")


@dataclass
class SessionService:
    db: Database
    tokens: Tokens
    lifecycle: Lifecycle

    async def login(self, body: Any, socket_url: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise invalid_request("the body must be a JSON object")
        if "supervisorId" in body:
            principal = await self._supervisor(parse(SupervisorLogin, body))
        elif "key" in body:
            principal = await self._candidate_by_key(parse(KeyLogin, body))
        else:
            principal = await self._candidate_by_code(parse(WebLogin, body))
        plan = await self.lifecycle.get_plan(principal.plan_id)
        stage_rows = await self.db.fetch_all(
            "SELECT * FROM exam_stage WHERE plan_id = ? ORDER BY stage_order", (plan["plan_id"],)
        )
        now = utc_now()
        body_out: dict[str, Any] = {
            "token": self.tokens.issue(principal),
            "tokenType": "Bearer",
            "expiresIn": self.tokens.ttl_seconds,
            "role": principal.role,
            "planId": principal.plan_id,
            "groupId": principal.group_id,
            "socketUrl": socket_url,
            "plan": public_plan(plan),
            "stages": [public_stage(dict(s)) for s in stage_rows],
            "serverTime": iso(now),
        }
        if principal.role == "candidate":
            body_out["candidateId"] = principal.subject_id
            body_out["progress"] = await self.lifecycle.candidate_view(
                principal.plan_id, principal.subject_id
            )
        else:
            body_out["supervisorId"] = principal.subject_id
        return body_out

    async def _open_plan(self, plan_id: str) -> dict[str, Any]:
        row = await self.db.fetch_one("SELECT * FROM exam_plan WHERE plan_id = ?", (plan_id,))
        if row is None:
            raise _bad_credentials()
        if row["status"] == "created":
            raise ApiError(
                409, "plan_not_prepared", "this exam is not open yet", {"plan_id": plan_id}
            )
        return dict(row)

    async def _candidate_by_code(self, login: WebLogin) -> Principal:
        plan = await self._open_plan(login.planId)
        self._method(plan, "web")
        row = await self.db.fetch_one(
            "SELECT candidate_id, group_id, candidate_auth_code FROM exam_candidate"
            " WHERE candidate_id = ? AND plan_id = ?",
            (login.candidateId, login.planId),
        )
        if row is None or not _same(row["candidate_auth_code"], login.authCode):
            raise _bad_credentials()
        return Principal("candidate", login.planId, row["candidate_id"], row["group_id"])

    async def _candidate_by_key(self, login: KeyLogin) -> Principal:
        plan = await self._open_plan(login.planId)
        self._method(plan, "key")
        row = await self.db.fetch_one(
            "SELECT candidate_id, group_id, access_key FROM exam_candidate"
            " WHERE access_key = ? AND plan_id = ?",
            (login.key, login.planId),
        )
        if row is None or not _same(row["access_key"], login.key):
            raise _bad_credentials()
        return Principal("candidate", login.planId, row["candidate_id"], row["group_id"])

    async def _supervisor(self, login: SupervisorLogin) -> Principal:
        await self._open_plan(login.planId)
        row = await self.db.fetch_one(
            "SELECT supervisor_id, group_id, supervisor_auth_code FROM exam_supervisor"
            " WHERE supervisor_id = ? AND plan_id = ?",
            (login.supervisorId, login.planId),
        )
        if row is None or not _same(row["supervisor_auth_code"], login.authCode):
            raise _bad_credentials()
        return Principal("supervisor", login.planId, row["supervisor_id"], row["group_id"])

    @staticmethod
    def _method(plan: dict[str, Any], method: str) -> None:
        if plan["login_method"] != method:
            raise ApiError(
                403,
                "login_method_not_allowed",
                f"this exam uses {plan['login_method']} login",
                {"login_method": plan["login_method"]},
            )


def _same(stored: str, given: str) -> bool:
    return hmac.compare_digest(stored.encode(), given.encode())
