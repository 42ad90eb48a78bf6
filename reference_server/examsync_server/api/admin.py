"""Admin endpoints (DESIGN §4): the admin token only."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, jsonify, request

from ..access.throttle import KINDS, Account
from ..errors import invalid_request
from ..exam.models import check_id
from .common import json_body, read_body, require_admin

blueprint = Blueprint("admin", __name__, url_prefix="/api/v1/admin")


def _plan_id(plan_id: str) -> str:
    return check_id(plan_id, "plan_id")


def lockout_account(plan_id: str, kind: str, subject: str) -> Account:
    if kind == "candidate":
        return Account(plan_id, "candidate", check_id(subject, "candidateId"))
    if kind == "supervisor":
        return Account(plan_id, "supervisor", check_id(subject, "supervisorId"))
    if kind == "key":
        if not 0 < len(subject) <= 64 or not subject.isprintable():
            raise invalid_request("id must be the client address", "id")
        return Account(plan_id, "key", subject)
    raise invalid_request("kind must be one of " + ", ".join(KINDS), "kind")


@blueprint.put("/plans/<plan_id>")
async def put_plan(plan_id: str) -> Any:
    rt = require_admin()
    body = await json_body()
    summary, created = await rt.lifecycle.import_plan(_plan_id(plan_id), body)
    response = jsonify(summary)
    response.status_code = 201 if created else 200
    return response


@blueprint.put("/plans/<plan_id>/package")
async def put_package(plan_id: str) -> Any:
    rt = require_admin()
    _plan_id(plan_id)
    data = await read_body()
    result = await rt.lifecycle.upload_package(
        plan_id, data, request.headers.get("X-Content-SHA256")
    )
    return jsonify(result)


@blueprint.post("/plans/<plan_id>/prepare")
async def prepare(plan_id: str) -> Any:
    rt = require_admin()
    return jsonify(await rt.lifecycle.prepare(_plan_id(plan_id)))


@blueprint.post("/plans/<plan_id>/start")
async def start(plan_id: str) -> Any:
    rt = require_admin()
    return jsonify(await rt.lifecycle.start(_plan_id(plan_id)))


@blueprint.post("/plans/<plan_id>/end")
async def end(plan_id: str) -> Any:
    rt = require_admin()
    return jsonify(await rt.lifecycle.end(_plan_id(plan_id), await json_body(optional=True)))


@blueprint.post("/plans/<plan_id>/sessions/revoke")
async def revoke_sessions(plan_id: str) -> Any:
    """End sessions now: `{"candidates": [..], "supervisors": [..]}` or `{"all": true}`."""
    rt = require_admin()
    return jsonify(await rt.lifecycle.revoke_sessions(_plan_id(plan_id), await json_body()))


@blueprint.post("/plans/<plan_id>/advance")
async def advance(plan_id: str) -> Any:
    """Move the stage clock on by hand: the plan's (simultaneous) or one candidate's."""
    rt = require_admin()
    return jsonify(
        await rt.moves.advance_by_admin(_plan_id(plan_id), await json_body(optional=True))
    )


@blueprint.post("/plans/<plan_id>/resync")
async def resync(plan_id: str) -> Any:
    rt = require_admin()
    await rt.lifecycle.get_plan(_plan_id(plan_id))
    await rt.lifecycle.resync(plan_id)
    return jsonify({"planId": plan_id, "resynced": True})


@blueprint.get("/plans/<plan_id>")
async def status(plan_id: str) -> Any:
    rt = require_admin()
    report = await rt.lifecycle.status(_plan_id(plan_id))
    return jsonify({**report, "lockouts": await rt.throttle.lockouts(plan_id)})


@blueprint.delete("/plans/<plan_id>/lockouts/<kind>/<account_id>")
async def lift_lockout(plan_id: str, kind: str, account_id: str) -> Any:
    """Lift a sign-in lockout: `candidate`/`supervisor` and their id, or `key` and the client
    address whose key logins were locked out."""
    rt = require_admin()
    await rt.lifecycle.get_plan(_plan_id(plan_id))
    account = lockout_account(plan_id, kind, account_id)
    lifted = await rt.throttle.lift(account, "admin")
    return jsonify({"planId": plan_id, "kind": kind, "id": account.subject, "lifted": lifted})


@blueprint.get("/plans/<plan_id>/candidates")
async def candidates(plan_id: str) -> Any:
    """Candidates with their credentials, for the operator to hand out."""
    rt = require_admin()
    await rt.lifecycle.get_plan(_plan_id(plan_id))
    return jsonify({"planId": plan_id, "candidates": await rt.candidates.credentials(plan_id)})
