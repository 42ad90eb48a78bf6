"""Endpoints for supervisors: the group's snapshot, from which the dashboard follows events."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, jsonify

from .common import require_session

blueprint = Blueprint("supervisor", __name__, url_prefix="/api/v1/supervisor")


@blueprint.get("/snapshot")
async def snapshot() -> Any:
    """The examinees now, and the `position` to open the socket with (`lastPosition=`)."""
    rt, who = require_session()
    return jsonify(await rt.snapshots.take(who))
