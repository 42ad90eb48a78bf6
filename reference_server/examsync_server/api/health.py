"""GET /healthz: liveness, and readiness of Redis and SQLite."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, jsonify
from redis.exceptions import RedisError

from .common import runtime

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
async def healthz() -> Any:
    rt = runtime()
    checks: dict[str, str] = {}
    try:
        await rt.redis.ping()
        checks["redis"] = "ok"
    except RedisError as exc:
        checks["redis"] = f"error: {exc}"
    try:
        await rt.db.ping()
        checks["sqlite"] = "ok"
    except Exception as exc:  # any failure means not ready; report it, don't raise
        checks["sqlite"] = f"error: {exc}"
    ok = all(v == "ok" for v in checks.values())
    response = jsonify({"status": "ok" if ok else "degraded", "checks": checks})
    response.status_code = 200 if ok else 503
    return response
