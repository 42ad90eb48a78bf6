"""`GET /api/v1/events`: the socket's events over HTTP, for clients in fallback (polling.py)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, jsonify, request

from .common import require_session

blueprint = Blueprint("events", __name__, url_prefix="/api/v1")


@blueprint.get("/events")
async def poll() -> Any:
    """Events after `?after=<position>`; a candidate who polls counts as connected."""
    rt, who = require_session()
    return jsonify(
        await rt.polling.poll(
            who,
            request.args.get("after") or None,
            request.remote_addr or "",
            request.headers.get("User-Agent", ""),
        )
    )
