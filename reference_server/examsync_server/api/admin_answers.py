"""Admin endpoints for answers: history of any candidate, dead letters and their replay."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, jsonify, request

from ..errors import ApiError, invalid_request
from ..exam.models import check_id
from ..store.errors import DeadLetterNotFound
from .common import json_body, require_admin

blueprint = Blueprint("admin_answers", __name__, url_prefix="/api/v1/admin/plans/<plan_id>")


@blueprint.get("/answers/<candidate_id>/<exam_code>/history")
async def history(plan_id: str, candidate_id: str, exam_code: str) -> Any:
    rt = require_admin()
    await rt.lifecycle.get_plan(check_id(plan_id, "plan_id"))
    quiz = request.args.get("quizCode")
    versions = await rt.restores.history(
        plan_id,
        check_id(candidate_id, "candidate_id"),
        check_id(exam_code, "exam_code"),
        check_id(quiz, "quizCode") if quiz else None,
    )
    return jsonify(
        {
            "planId": plan_id,
            "candidateId": candidate_id,
            "examCode": exam_code,
            "versions": versions,
        }
    )


@blueprint.get("/dead-letters")
async def dead_letters(plan_id: str) -> Any:
    rt = require_admin()
    await rt.lifecycle.get_plan(check_id(plan_id, "plan_id"))
    return jsonify({"planId": plan_id, "deadLetters": await rt.dead_letters.listing(plan_id)})


@blueprint.post("/dead-letters/replay")
async def replay(plan_id: str) -> Any:
    """`{}` replays every unreplayed dead letter of the plan; `{"ids": [..]}` only those."""
    rt = require_admin()
    await rt.lifecycle.get_plan(check_id(plan_id, "plan_id"))
    body = await json_body(optional=True)
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(body, dict) or (
        ids is not None
        and not (
            isinstance(ids, list)
            and all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
        )
    ):
        raise invalid_request('the body is {} or {"ids": [integers]}')
    try:
        replayed = await rt.dead_letters.replay(plan_id, ids)
    except DeadLetterNotFound as exc:
        raise ApiError(
            404,
            "dead_letter_not_found",
            "some ids are not unreplayed dead letters of this plan",
            {"ids": exc.ids},
        ) from exc
    return jsonify({"planId": plan_id, "replayed": replayed})
