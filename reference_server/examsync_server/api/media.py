"""Capture and log uploads for candidates (seed 002 미디어, 로그); captures for admins."""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Blueprint, Response, jsonify, request

from ..errors import not_found
from ..exam.models import check_id
from ..media.candidate_logs import MAX_LOG_BATCH_BYTES
from ..media.captures import MAX_CAPTURE_BYTES, capture_request
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
    data = await read_body(MAX_CAPTURE_BYTES)
    return _json(await rt.captures.receive(who, upload, data))


@blueprint.post("/logs")
async def logs() -> Any:
    rt, who = require_session()
    data = await read_body(MAX_LOG_BATCH_BYTES)
    return _json(await rt.logs.receive(who, data, request.headers.get("X-Content-SHA256")))


@blueprint.get("/admin/plans/<plan_id>/candidates/<candidate_id>/captures")
async def list_captures(plan_id: str, candidate_id: str) -> Any:
    """A candidate's captures, newest first (`?limit=`, at most 500)."""
    rt = require_admin()
    limit = min(500, max(1, request.args.get("limit", 100, type=int) or 100))
    rows = await rt.db.fetch_all(
        "SELECT capture_id, kind, content_type, size, sha256, captured_at, stored_at, late"
        " FROM capture WHERE plan_id = ? AND candidate_id = ? ORDER BY captured_at DESC LIMIT ?",
        (check_id(plan_id, "plan_id"), check_id(candidate_id, "candidate_id"), limit),
    )
    return jsonify(
        {
            "captures": [
                {
                    "captureId": r["capture_id"],
                    "kind": r["kind"],
                    "contentType": r["content_type"],
                    "size": r["size"],
                    "sha256": r["sha256"],
                    "capturedAt": r["captured_at"],
                    "storedAt": r["stored_at"],
                    "late": bool(r["late"]),
                }
                for r in rows
            ]
        }
    )


@blueprint.get("/admin/plans/<plan_id>/candidates/<candidate_id>/captures/<capture_id>")
async def capture_blob(plan_id: str, candidate_id: str, capture_id: str) -> Any:
    rt = require_admin()
    row = await rt.db.fetch_one(
        "SELECT content_type, path FROM capture WHERE plan_id = ? AND candidate_id = ?"
        " AND capture_id = ?",
        (
            check_id(plan_id, "plan_id"),
            check_id(candidate_id, "candidate_id"),
            check_id(capture_id, "captureId"),
        ),
    )
    if row is None:
        raise not_found("capture", captureId=capture_id)
    # off the event loop: a capture may be megabytes (audio), and requests share the loop
    data = await asyncio.to_thread(rt.files.read, rt.files.root / row["path"])
    return Response(data, content_type=row["content_type"])


def _json(ack: bytes) -> Response:
    """An acknowledgement as the persister encoded it (pipeline/acks.py)."""
    return Response(ack, content_type="application/json")
