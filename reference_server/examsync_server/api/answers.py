"""Answer endpoints for candidates (seed 002): restore, history; and the receipt keys.

The save itself, `POST /api/v1/answers`, is the hot path: see save_route.py.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, jsonify, request

from ..errors import ApiError
from ..exam.models import check_id
from .common import require_session, runtime

blueprint = Blueprint("answers", __name__, url_prefix="/api/v1")


@blueprint.get("/answers/<exam_code>")
async def restore(exam_code: str) -> Any:
    rt, who = require_session()
    return jsonify(await rt.restores.restore(who, check_id(exam_code, "exam_code")))


@blueprint.get("/answers/<exam_code>/history")
async def history(exam_code: str) -> Any:
    """Every stored version of one's own answers (all questions, or `?quizCode=`)."""
    rt, who = require_session()
    if who.role != "candidate":
        raise ApiError(403, "candidates_only", "only candidates read their own history")
    check_id(exam_code, "exam_code")
    quiz = request.args.get("quizCode")
    versions = await rt.restores.history(
        who.plan_id, who.subject_id, exam_code, check_id(quiz, "quizCode") if quiz else None
    )
    return jsonify({"examCode": exam_code, "versions": versions})


@blueprint.get("/keys")
async def receipt_keys() -> Any:
    rt = runtime()
    return jsonify(
        {"keys": rt.signer.public_keys(), "current": rt.signer.current, "alg": "Ed25519"}
    )
