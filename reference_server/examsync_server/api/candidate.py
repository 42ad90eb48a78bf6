"""Endpoints for people with a session: log in, own progress, the exam package."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, jsonify, request

from ..access.addresses import client_address
from ..errors import ApiError
from .common import json_body, require_session, runtime

blueprint = Blueprint("candidate", __name__, url_prefix="/api/v1")


@blueprint.post("/sessions")
async def login() -> Any:
    rt = runtime()
    body = await json_body()
    try:
        socket_url = rt.socket_url(request.host)
    except ValueError:  # a Host werkzeug lets through but urllib cannot parse: "[1::2::3]"
        socket_url = rt.socket_url(None)
    address = client_address(
        request.remote_addr,
        request.headers.get("X-Forwarded-For"),
        rt.settings.logins.trusted_networks,
    )
    result = await rt.sessions.login(body, socket_url, address)
    response = jsonify(result)
    response.status_code = 201
    return response


@blueprint.get("/me")
async def me() -> Any:
    rt, who = require_session()
    if who.role != "candidate":
        return jsonify(
            {
                "role": who.role,
                "planId": who.plan_id,
                "supervisorId": who.subject_id,
                "groupId": who.group_id,
            }
        )
    return jsonify(await rt.lifecycle.candidate_view(who.plan_id, who.subject_id))


@blueprint.post("/me/start")
async def start() -> Any:
    rt, who = require_session()
    _candidate_only(who.role)
    return jsonify(await rt.moves.start_candidate(who.plan_id, who.subject_id))


@blueprint.post("/me/advance")
async def advance() -> Any:
    """An examinee of an individual exam finishes their stage early."""
    rt, who = require_session()
    _candidate_only(who.role)
    return jsonify(await rt.moves.advance_by_candidate(who.plan_id, who.subject_id))


@blueprint.get("/plans/<plan_id>/package")
async def package(plan_id: str) -> Any:
    rt, who = require_session()
    if who.plan_id != plan_id:
        raise ApiError(403, "forbidden", "this session is for another plan")
    plan = await rt.lifecycle.get_plan(plan_id)
    etag = plan["package_sha256"]
    if etag and request.if_none_match.contains(etag):
        return Response("", status=304, headers={"ETag": f'"{etag}"'})
    data = rt.lifecycle.package_bytes(plan)
    if data is None:
        raise ApiError(404, "package_not_found", "this plan has no package yet")
    return Response(
        data,
        content_type="application/zip",
        headers={
            "ETag": f'"{etag}"',
            # Private: a candidate's browser may keep it for offline use; shared caches may not.
            "Cache-Control": "private, max-age=86400",
            "X-Content-SHA256": etag,
        },
    )


def _candidate_only(role: str) -> None:
    if role != "candidate":
        raise ApiError(403, "candidates_only", "only candidates can do this")
