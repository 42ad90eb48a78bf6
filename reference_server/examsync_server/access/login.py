"""Logging in (POST /api/v1/sessions): candidates by auth code or key, supervisors by auth code.

Which plan a person belongs to is checked here once; afterwards the signed token carries it.
Unknown ids and wrong codes get the same answer, so ids cannot be probed. A candidate signs in
from a device (`deviceId`, made here when absent), which the token carries too; unless the
sign-in says `activate: false` (a token renewal), that device becomes the candidate's active
one (exam/devices.py). Every attempt passes the login throttle first (throttle.py): failed
sign-ins are limited, counted and logged, unknown ids exactly like wrong codes.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints

from ..base.clock import iso, utc_now
from ..errors import ApiError, invalid_request
from ..exam.devices import Devices, SignedIn
from ..exam.lifecycle import Lifecycle
from ..exam.models import Id, parse
from ..exam.plan_status import Action, require
from ..exam.views import public_plan, public_stage
from ..store.candidates import Candidates, Credential
from ..store.plans import Plans, Row
from ..store.sqlite import Database
from .addresses import UNKNOWN as UNKNOWN_ADDRESS
from .throttle import Account, LoginThrottle
from .tokens import Principal, Tokens

# What a sign-in found: the person whose secret it must match (None: no such id), the secret
# it gave, and whether its plan exists.
Found = tuple[Credential | None, str, bool]

Code = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class _Login(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    planId: Id


class _CandidateLogin(_Login):
    deviceId: Id | None = None
    activate: bool = True


class WebLogin(_CandidateLogin):
    candidateId: Id
    authCode: Code


class KeyLogin(_CandidateLogin):
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
    throttle: LoginThrottle

    def __post_init__(self) -> None:
        self.plans = Plans(self.db)
        self.candidates = Candidates(self.db)
        self.devices = Devices(self.lifecycle.live, self.lifecycle.candidates)

    async def login(
        self, body: Any, socket_url: str, address: str = UNKNOWN_ADDRESS
    ) -> dict[str, Any]:
        """Sign in from `address` (the client's, access/addresses.py)."""
        # The token says it was issued now, before the credentials are read: a revocation
        # stamped after its commit (exam/lifecycle.py) then refuses a token whose read saw the
        # credentials it replaced, however long this sign-in takes.
        began = time.time()
        if not isinstance(body, dict):
            raise invalid_request("the body must be a JSON object")
        candidate: _CandidateLogin | None = None
        if "supervisorId" in body:
            principal = await self._supervisor(parse(SupervisorLogin, body), address)
        elif "key" in body:
            candidate = parse(KeyLogin, body)
            principal = await self._candidate_by_key(candidate, address)
        else:
            candidate = parse(WebLogin, body)
            principal = await self._candidate_by_code(candidate, address)
        plan = await self.lifecycle.get_plan(principal.plan_id)
        signed_in: SignedIn | None = None
        if candidate is not None:
            device_id = candidate.deviceId or f"srv-{secrets.token_hex(8)}"
            principal = replace(principal, device_id=device_id)
            signed_in = await self.devices.sign_in(
                plan, principal.subject_id, principal.group_id, device_id, candidate.activate
            )
        stage_rows = await self.plans.stages(plan["plan_id"])
        now = utc_now()
        body_out: dict[str, Any] = {
            "token": self.tokens.issue(principal, issued_at=began),
            "tokenType": "Bearer",
            "expiresIn": self.tokens.ttl_seconds,
            "role": principal.role,
            "planId": principal.plan_id,
            "groupId": principal.group_id,
            "socketUrl": socket_url,
            "plan": public_plan(plan),
            "stages": [public_stage(s) for s in stage_rows],
            "serverTime": iso(now),
        }
        if signed_in is not None:
            body_out["candidateId"] = principal.subject_id
            body_out["progress"] = await self.lifecycle.candidate_view(
                principal.plan_id, principal.subject_id
            )
            body_out["deviceId"] = principal.device_id
            body_out["devicePolicy"] = plan["device_policy"]
            active = signed_in.active
            body_out["activeDevice"] = active.to_json() if active is not None else None
            body_out["replacedDevice"] = signed_in.replaced
        else:
            body_out["supervisorId"] = principal.subject_id
        return body_out

    async def _signed_in(
        self, account: Account, address: str, find: Callable[[], Awaitable[Found]]
    ) -> Principal:
        """The principal whose secret `find` matched, through the throttle: admitted before
        the secret is read, and every wrong id or code counted and logged."""
        attempt = await self.throttle.admit(account, address)
        try:
            found, given, plan_known = await find()
        except Exception:  # no guess (a plan not open for sign-in, say): it does not count
            await attempt.give_back()
            raise
        if found is None or not hmac.compare_digest(found.secret.encode(), given.encode()):
            reason = (
                "wrong code"
                if found
                else "unknown plan"
                if not plan_known
                else "unknown key"
                if account.kind == "key"
                else "unknown id"
            )
            group_id = found.group_id if found is not None else None
            await attempt.failed(reason, group_id, found is not None, plan_known)
            raise _bad_credentials()
        await attempt.succeeded()
        return Principal(account.role, account.plan_id, found.subject_id, found.group_id)

    async def _open_plan(self, plan_id: str, method: str | None) -> bool:
        """Whether the plan exists (an unknown plan is answered as a wrong id); 409 when it is
        not open for sign-in, 403 when it takes another login method."""
        plan = await self.plans.find(plan_id)
        if plan is None:
            return False
        require(Action.SIGN_IN, plan_id, plan["status"])
        if method is not None:
            self._method(plan, method)
        return True

    async def _candidate_by_code(self, login: WebLogin, address: str) -> Principal:
        async def find() -> Found:
            if not await self._open_plan(login.planId, "web"):
                return None, login.authCode, False
            found = await self.candidates.by_auth_code(login.planId, login.candidateId)
            return found, login.authCode, True

        account = Account(login.planId, "candidate", login.candidateId)
        return await self._signed_in(account, address, find)

    async def _candidate_by_key(self, login: KeyLogin, address: str) -> Principal:
        async def find() -> Found:
            if not await self._open_plan(login.planId, "key"):
                return None, login.key, False
            return await self.candidates.by_key(login.planId, login.key), login.key, True

        return await self._signed_in(Account(login.planId, "key", address), address, find)

    async def _supervisor(self, login: SupervisorLogin, address: str) -> Principal:
        async def find() -> Found:
            if not await self._open_plan(login.planId, None):
                return None, login.authCode, False
            found = await self.candidates.supervisor(login.planId, login.supervisorId)
            return found, login.authCode, True

        account = Account(login.planId, "supervisor", login.supervisorId)
        return await self._signed_in(account, address, find)

    @staticmethod
    def _method(plan: Row, method: str) -> None:
        if plan["login_method"] != method:
            raise ApiError(
                403,
                "login_method_not_allowed",
                f"this exam uses {plan['login_method']} login",
                {"login_method": plan["login_method"]},
            )
