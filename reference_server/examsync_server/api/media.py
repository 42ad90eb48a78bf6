"""Capture and log uploads for candidates (seed 002 미디어, 로그); captures for admins."""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Blueprint, Response, jsonify, request

from ..errors import not_found
from ..exam.models import check_id
from ..media.captures import capture_request
from .common import read_body, require_admin, require_session

blueprint = Blueprint("media", __name__, url_prefix="/api/v1")


@blueprint.post("/captures")
async def capture() -> Any:
    rt, who = require_session()
    upload = capture_request(
        request.args,
        request.headers.get("Content-Type", ""),
        request.headers.get("X-Content-SHA256"),
    )
    data = await read_body()
    return _json(await rt.captures.receive(who, upload, data))


@blueprint.post("/logs")
async def logs() -> Any:
    rt, who = require_session()
    data = await read_body()
    return _json(await rt.logs.receive(who, data, request.headers.get("X-Content-SHA256")))


@blueprint.get("/admin/plans/<plan_id>/candidates/<candidate_id>/captures")
async def list_captures(plan_id: str, candidate_id: str) -> Any:
    """A candidate's captures, newest first (`?limit=`, at most 500)."""
    rt = require_admin()
    limit = min(500, max(1, request.args.get("limit", 100, type=int) or 100))
    found = await rt.media_records.captures(
        check_id(plan_id, "plan_id"), check_id(candidate_id, "candidate_id"), limit
    )
    return jsonify(
        {
            "captures": [
                {
                    "captureId": c.capture_id,
                    "kind": c.kind,
                    "contentType": c.content_type,
                    "size": c.size,
                    "sha256": c.sha256,
                    "capturedAt": c.captured_at,
                    "storedAt": c.stored_at,
                    "late": c.late,
                }
                for c in found
            ]
        }
    )


@blueprint.get("/admin/plans/<plan_id>/candidates/<candidate_id>/captures/<capture_id>")
async def capture_blob(plan_id: str, candidate_id: str, capture_id: str) -> Any:
    rt = require_admin()
    found = await rt.media_records.capture_file(
        check_id(plan_id, "plan_id"),
        check_id(candidate_id, "candidate_id"),
        check_id(capture_id, "captureId"),
    )
    if found is None:
        raise not_found("capture", captureId=capture_id)
    # off the event loop: a capture may be megabytes (audio), and requests share the loop
    data = await asyncio.to_thread(rt.files.read, rt.files.root / found.path)
    return Response(data, content_type=found.content_type)


def _json(ack: bytes) -> Response:
    """An acknowledgement as the persister encoded it (pipeline/acks.py)."""
    return Response(ack, content_type="application/json")
