"""GET /api/v1/openapi.json: the contract, generated from the same models that validate requests.

A test checks that every route the app serves is described here.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, jsonify

from .. import __version__
from ..access.login import KeyLogin, SupervisorLogin, WebLogin
from ..exam.models import ID_PATTERN, AdvanceRequest, EndRequest, PlanImport, RevokeRequest
from ..media.captures import AUDIO, IMAGES

blueprint = Blueprint("openapi", __name__)

_ERROR = {"$ref": "#/components/schemas/Error"}

# What any route may answer, whatever it does (docs/server.md, "The HTTP port's limits").
ANY_ROUTE = {
    408: "body_timeout: the request body stopped arriving",
    413: "payload_too_large: the body is over the route's limit",
    503: "starting, redis_unavailable or too_many_connections: retry (Retry-After)",
}


def _op(
    summary: str,
    responses: dict[int, str],
    *,
    body: Any = None,
    admin: bool = False,
    session: bool = False,
    params: tuple[str, ...] = (),
    extra_params: tuple[dict[str, Any], ...] = (),
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            str(code): {
                "description": text,
                **({"content": {"application/json": {"schema": _ERROR}}} if code >= 400 else {}),
            }
            for code, text in {**ANY_ROUTE, **responses}.items()
        },
    }
    if admin:
        op["security"] = [{"adminToken": []}]
    elif session:
        op["security"] = [{"sessionToken": []}]
    if body is not None:
        op["requestBody"] = {"required": True, "content": body}
    if params or extra_params:
        op["parameters"] = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in params
        ] + list(extra_params)
    return op


def _param(
    name: str, where: str = "query", required: bool = False, **schema: Any
) -> dict[str, Any]:
    """A query or header parameter, so that clients (and the fuzzer) know to send it."""
    return {"name": name, "in": where, "required": required, "schema": schema or {"type": "string"}}


# The SHA-256 of the body, lowercase hex, on uploads (packages, captures, logs).
_SHA256_HEADER = _param("X-Content-SHA256", "header", required=True)


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


NOT_JSON = {400: "empty_body or invalid_json"}
ADMIN_ERRORS = {
    401: "missing or invalid token",
    403: "not the admin token",
    404: "no such plan",
    409: "not allowed in the plan's status",
    422: "invalid input",
}


def document() -> dict[str, Any]:
    plan = ("plan_id",)
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message", "details"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "details": {"type": "object"},
                    },
                }
            },
        },
    }
    for model in (
        PlanImport,
        AdvanceRequest,
        EndRequest,
        RevokeRequest,
        WebLogin,
        KeyLogin,
        SupervisorLogin,
    ):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    paths = {
        "/healthz": {
            "get": _op(
                "liveness and readiness of Redis and SQLite",
                {200: "Redis and SQLite are ready", 503: "a store is unavailable"},
            )
        },
        "/api/v1/openapi.json": {"get": _op("this document", {200: "OpenAPI 3.1"})},
        "/api/v1/admin/plans/{plan_id}": {
            "put": _op(
                "create or replace a plan (seed 003 tables)",
                {200: "replaced", 201: "a new plan", **ADMIN_ERRORS, **NOT_JSON},
                body=_json("PlanImport"),
                admin=True,
                params=plan,
            ),
            "get": _op(
                "plan status, counts, queue depths",
                {200: "status", **ADMIN_ERRORS},
                admin=True,
                params=plan,
            ),
        },
        "/api/v1/admin/plans/{plan_id}/package": {
            "put": _op(
                "upload the exam package zip; X-Content-SHA256 header required",
                {
                    200: "stored",
                    400: "missing or malformed checksum header",
                    413: "too large",
                    **ADMIN_ERRORS,
                },
                body={"application/zip": {"schema": {"type": "string", "format": "binary"}}},
                admin=True,
                params=plan,
                extra_params=(_SHA256_HEADER,),
            )
        },
        "/api/v1/admin/plans/{plan_id}/candidates": {
            "get": _op(
                "candidates with their credentials",
                {200: "list", **ADMIN_ERRORS},
                admin=True,
                params=plan,
            )
        },
    }
    paths["/api/v1/admin/plans/{plan_id}/lockouts/{kind}/{account_id}"] = {
        "delete": _op(
            "lift a sign-in lockout: kind candidate or supervisor and its id (key and the"
            " client address is accepted, but key login is never locked out)",
            {200: "planId, kind, id, lifted (false: was not locked out)", **ADMIN_ERRORS},
            admin=True,
            params=("plan_id", "kind", "account_id"),
        )
    }
    for action, text in (
        ("prepare", "seed 000: DB, Redis and queues ready; idempotent"),
        ("start", "status in_progress; stage clocks begin"),
        ("resync", "rewrite the plan's Redis keys from SQLite"),
    ):
        paths[f"/api/v1/admin/plans/{{plan_id}}/{action}"] = {
            "post": _op(text, {200: "done", **ADMIN_ERRORS}, admin=True, params=plan)
        }
    for action, text, schema_name, required in (
        (
            "end",
            "seed 001: completed, exam_end to every socket; {revokeSessions: true} also"
            " revokes every candidate's session",
            "EndRequest",
            False,
        ),
        (
            "sessions/revoke",
            "revoke sessions now: named candidates and supervisors, or all of the plan's;"
            " they are answered 401 session_revoked and their sockets closed (4401)",
            "RevokeRequest",
            True,
        ),
    ):
        op = _op(
            text,
            {200: "done", 400: "invalid JSON", **ADMIN_ERRORS},
            body=_json(schema_name),
            admin=True,
            params=plan,
        )
        op["requestBody"]["required"] = required
        paths[f"/api/v1/admin/plans/{{plan_id}}/{action}"] = {"post": op}
    paths["/api/v1/admin/plans/{plan_id}/advance"] = {
        "post": _op(
            "move a stage clock on by hand",
            {200: "moved", **ADMIN_ERRORS, **NOT_JSON},
            body=_json("AdvanceRequest"),
            admin=True,
            params=plan,
        )
    }
    paths["/api/v1/sessions"] = {
        "post": _op(
            "log in: web (candidateId+authCode), key, or supervisor (supervisorId+authCode)",
            {
                201: "token, socketUrl, plan config, stages, serverTime; a candidate's also"
                " deviceId, devicePolicy, activeDevice, replacedDevice",
                400: "empty_body or invalid_json",
                401: "invalid_credentials: an unknown id and a wrong code alike",
                403: "login method not allowed",
                409: "plan not prepared",
                422: "invalid input",
                429: "too_many_attempts (details.retryAfter) or locked_out (details.retryAfter,"
                " details.lockedUntil): failed sign-ins limited; Retry-After header",
            },
            body={
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/WebLogin"},
                            {"$ref": "#/components/schemas/KeyLogin"},
                            {"$ref": "#/components/schemas/SupervisorLogin"},
                        ]
                    }
                }
            },
        )
    }
    paths["/api/v1/sessions"]["post"]["responses"]["429"]["headers"] = {
        "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
    }
    session_errors = {
        401: "missing, invalid, expired (token_expired) or revoked (session_revoked) token",
        403: "not allowed",
        409: "not allowed in this state",
    }
    paths["/api/v1/me"] = {
        "get": _op("own status and stage clock", {200: "progress", **session_errors}, session=True)
    }
    paths["/api/v1/events"] = {
        "get": {
            **_op(
                "the socket's events over HTTP (fallback): those after ?after=<position>, and the"
                " position to poll from next; a candidate who polls counts as connected (http)",
                {200: "events", 400: "after is no position", **session_errors},
                session=True,
            ),
            "parameters": [
                {"name": "after", "in": "query", "required": False, "schema": {"type": "string"}}
            ],
        }
    }
    paths["/api/v1/supervisor/snapshot"] = {
        "get": _op(
            "the supervisor's examinees now (connection, stage, answers, pending on device) and"
            " the socket_queue position to resume the socket from (lastPosition)",
            {200: "snapshot", **session_errors},
            session=True,
        )
    }
    paths["/api/v1/supervisor/lockouts/{candidate_id}"] = {
        "delete": _op(
            "lift a sign-in lockout of a candidate of the supervisor's group",
            {
                200: "planId, candidateId, lifted (false: was not locked out)",
                **session_errors,
                403: "supervisors_only, or other_group: not the supervisor's group",
                404: "candidate_not_found in the supervisor's plan",
                422: "invalid candidate id",
            },
            session=True,
            params=("candidate_id",),
        )
    }
    paths["/api/v1/me/start"] = {
        "post": _op(
            "start (individual exams: own clock begins)",
            {200: "progress", **session_errors},
            session=True,
        )
    }
    paths["/api/v1/me/advance"] = {
        "post": _op(
            "finish own stage early (individual exams)",
            {200: "progress", **session_errors},
            session=True,
        )
    }
    paths["/api/v1/plans/{plan_id}/package"] = {
        "get": _op(
            "the exam package; ETag is its SHA-256",
            {200: "zip", 304: "not modified", **session_errors, 404: "no package"},
            session=True,
            params=plan,
        )
    }
    _answer_paths(paths, session_errors)
    _media_paths(paths, session_errors)
    return {
        "openapi": "3.1.0",
        "info": {"title": "examsync reference server", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer"},
                "sessionToken": {"type": "http", "scheme": "bearer"},
            },
        },
    }


def _answer_paths(paths: dict[str, Any], session_errors: dict[int, str]) -> None:
    """Seed 002: save, restore, history, receipt keys, dead letters (docs/protocol.md)."""
    exam = ("exam_code",)
    paths["/api/v1/answers"] = {
        "post": _op(
            "save answers (seed 002 §4.1); answered after the SQLite commit, a signed receipt per"
            " answer",
            {
                200: "SaveAck: a result per answer",
                400: "not JSON",
                413: "too large",
                422: "checksum_mismatch, invalid_request, unknown code",
                503: "ack_timeout or redis_unavailable: send again",
                **session_errors,
                409: "exam not in progress; device_replaced: another device took over and this"
                " save holds edits made since",
            },
            session=True,
            body={"application/json": {"schema": {"type": "object"}}},
        )
    }
    paths["/api/v1/answers/{exam_code}"] = {
        "get": _op(
            "restore (seed 002 §4.2) with its checksum; `missing` names what could not be restored",
            {
                200: "RestoreResponse",
                404: "no such exam code",
                422: "exam_code is not an id",
                **session_errors,
            },
            session=True,
            params=exam,
        )
    }
    paths["/api/v1/answers/{exam_code}/history"] = {
        "get": _op(
            "every stored version of one's own answers; ?quizCode= for one question",
            {200: "versions", 422: "exam_code or quizCode is not an id", **session_errors},
            session=True,
            params=exam,
            extra_params=(_param("quizCode"),),
        )
    }
    paths["/api/v1/keys"] = {
        "get": _op(
            "the Ed25519 public keys that sign receipts: {keys: {keyId: base64url raw key}}",
            {200: "keys"},
        )
    }
    base = "/api/v1/admin/plans/{plan_id}"
    paths[base + "/answers/{candidate_id}/{exam_code}/history"] = {
        "get": _op(
            "every stored version of a candidate's answers",
            {200: "versions", **ADMIN_ERRORS},
            admin=True,
            params=("plan_id", "candidate_id", "exam_code"),
            extra_params=(_param("quizCode"),),
        )
    }
    paths[base + "/dead-letters"] = {
        "get": _op(
            "queue entries that could not be persisted",
            {200: "list", **ADMIN_ERRORS},
            admin=True,
            params=("plan_id",),
        )
    }
    paths[base + "/dead-letters/replay"] = {
        "post": _op(
            "put dead letters back on their queue: {} for all, {ids: [..]} for some",
            {200: "replayed ids", **ADMIN_ERRORS, **NOT_JSON},
            admin=True,
            params=("plan_id",),
            body={"application/json": {"schema": {"type": "object"}}},
        )
    }


def _media_paths(paths: dict[str, Any], session_errors: dict[int, str]) -> None:
    """Seed 002 media and logs (docs/server.md "Captures and logs")."""
    uploaded = {
        200: "stored or duplicate (the same captureId/batchId again), after the commit",
        400: "missing or malformed X-Content-SHA256, not JSON",
        409: "exam not started or ended; capture kind not enabled by the plan",
        413: "too large",
        422: "checksum_mismatch, content_mismatch, invalid_request",
        503: "ack_timeout or redis_unavailable: send again",
        **session_errors,
    }
    paths["/api/v1/captures"] = {
        "post": _op(
            "upload a capture: raw bytes; ?kind=webcam|screen|mobile|audio&captureId=&capturedAt=;"
            " X-Content-SHA256",
            {**uploaded, 415: "content type not taken for this kind", 429: "too frequent"},
            session=True,
            body={
                kind: {"schema": {"type": "string", "format": "binary"}}
                for kind in (*IMAGES, *AUDIO)
            },
            extra_params=(
                _param("kind", required=True, enum=["webcam", "screen", "mobile", "audio"]),
                _param("captureId", required=True, type="string", pattern=ID_PATTERN),
                _param("capturedAt", required=True, type="string", format="date-time"),
                _SHA256_HEADER,
            ),
        )
    }
    paths["/api/v1/logs"] = {
        "post": _op(
            "upload a batch of log entries {batchId, entries: [{at, level, event, data}]};"
            " X-Content-SHA256",
            uploaded,
            session=True,
            body={"application/json": {"schema": {"type": "object"}}},
            extra_params=(_SHA256_HEADER,),
        )
    }
    captures = "/api/v1/admin/plans/{plan_id}/candidates/{candidate_id}/captures"
    paths[captures] = {
        "get": _op(
            "a candidate's captures, newest first (?limit=)",
            {200: "list", **ADMIN_ERRORS},
            admin=True,
            params=("plan_id", "candidate_id"),
            extra_params=(_param("limit", type="integer", minimum=1, maximum=500),),
        )
    }
    paths[captures + "/{capture_id}"] = {
        "get": _op(
            "one capture's bytes",
            {200: "the capture", **ADMIN_ERRORS},
            admin=True,
            params=("plan_id", "candidate_id", "capture_id"),
        )
    }


@blueprint.get("/api/v1/openapi.json")
async def openapi_json() -> Any:
    return jsonify(document())
