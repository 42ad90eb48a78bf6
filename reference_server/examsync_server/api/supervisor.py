"""Endpoints for supervisors: the group's snapshot, from which the dashboard follows events, and
lifting a sign-in lockout of one of the group's candidates."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, jsonify

from ..access.throttle import Account
from ..errors import ApiError, not_found
from ..exam.models import check_id
from .common import require_session

blueprint = Blueprint("supervisor", __name__, url_prefix="/api/v1/supervisor")


@blueprint.get("/snapshot")
async def snapshot() -> Any:
    """The examinees now, and the `position` to open the socket with (`lastPosition=`)."""
    rt, who = require_session()
    return jsonify(await rt.snapshots.take(who))


@blueprint.delete("/lockouts/<candidate_id>")
async def lift_lockout(candidate_id: str) -> Any:
    """Lift a candidate's sign-in lockout: their group's supervisors (any of the plan's, for a
    supervisor with no group) may."""
    rt, who = require_session()
    if who.role != "supervisor":
        raise ApiError(403, "supervisors_only", "only supervisors lift a lockout")
    row = await rt.candidates.find(who.plan_id, check_id(candidate_id, "candidateId"))
    if row is None:
        raise not_found("candidate", candidateId=candidate_id)
    if who.group_id is not None and row["group_id"] != who.group_id:
        raise ApiError(
            403, "other_group", "this candidate is not in your group", {"candidateId": candidate_id}
        )
    account = Account(who.plan_id, "candidate", candidate_id)
    lifted = await rt.throttle.lift(account, f"supervisor:{who.subject_id}", row["group_id"])
    return jsonify({"planId": who.plan_id, "candidateId": candidate_id, "lifted": lifted})
