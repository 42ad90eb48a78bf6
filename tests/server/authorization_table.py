"""Who may do what: every HTTP route and socket frame × every kind of caller → the answer.

The one place the server's authorization is written down as data (issue 15).
tests/server/test_authorization.py reads the routes off the running app (Quart's url_map and
the raw ASGI save route) and the frame types off the socket server, fails when one has no row
here or a row names none, and calls each with each caller's credentials on a real server.

Callers (`PRINCIPALS`): no token, a forged one (another secret), an expired one, a revoked one,
the admin's, a candidate of the plan (CAND202301, GROUP01) and of another plan, a supervisor of
that candidate's group, of another group, and of another plan. The plan is started.

An expectation is a status (with the error code a refusal must carry), or `ALLOWED`: past
authorization, whatever the request then met (200, a 409 for the plan's status, a 422 for
what it sent), but never 401, 403 or a 5xx.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from examsync_server.demo.sample import PLAN_ID

OTHER_PLAN = "PLAN202402"  # conftest.other_plan(): its people's ids end in B / OTHERn
ADMIN_PLAN = "PLAN202403"  # the admin's changes (replace, end, revoke) land here, not on PLAN_ID
EXAM_CODE = "EXAM202401"
CANDIDATE = "CAND202301"

PRINCIPALS = (
    "none",
    "forged",
    "expired",
    "revoked",
    "admin",
    "candidate",
    "candidate_other_plan",
    "supervisor",
    "supervisor_other_group",
    "supervisor_other_plan",
)
SESSIONS = PRINCIPALS[5:]
CANDIDATES = ("candidate", "candidate_other_plan")
SUPERVISORS = ("supervisor", "supervisor_other_group", "supervisor_other_plan")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    code: str | None = None  # the error code, for a refusal


ALLOWED = Answer(0, "allowed")  # past authorization: neither 401 nor 403, nor a 5xx

# A session route refuses a missing, bad, expired or revoked token each with its own code.
_NO_SESSION = {
    "none": Answer(401, "missing_token"),
    "forged": Answer(401, "invalid_token"),
    "expired": Answer(401, "token_expired"),
    "revoked": Answer(401, "session_revoked"),
    "admin": Answer(403, "session_only"),
}


def admin_only() -> dict[str, Answer]:
    """The admin token only; a session token is told it is not the admin's."""
    return {
        "none": Answer(401, "missing_token"),
        **{p: Answer(401, "invalid_token") for p in ("forged", "expired", "revoked")},
        "admin": ALLOWED,
        **{p: Answer(403, "admin_only") for p in SESSIONS},
    }


def public(status: int) -> dict[str, Answer]:
    """No token needed, and none changes the answer."""
    return {p: Answer(status) for p in PRINCIPALS}


def session(**answers: Answer) -> dict[str, Answer]:
    """A session route: the refusals above, then what each person gets."""
    found = {**_NO_SESSION, **answers}
    assert set(found) == set(PRINCIPALS), sorted(set(PRINCIPALS) - set(found))
    return found


def candidates_only() -> dict[str, Answer]:
    """Candidates act on their own data (the token names it); a supervisor is refused."""
    return session(
        candidate=ALLOWED,
        candidate_other_plan=ALLOWED,
        **{p: Answer(403, "candidates_only") for p in SUPERVISORS},
    )


def everyone_own() -> dict[str, Answer]:
    """Every session, each about their own plan (the token says which)."""
    return session(**{p: ALLOWED for p in SESSIONS})


@dataclass(frozen=True, slots=True)
class Row:
    method: str
    rule: str  # as Quart's url_map spells it; for the raw save route its path
    path: str  # a path of that rule to call
    expect: Mapping[str, Answer]
    json_body: Any = None
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.rule)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9"
LOG_BATCH = json.dumps(
    {
        "batchId": "b1",
        "entries": [{"at": "2026-12-07T20:00:00.000Z", "level": "info", "event": "x"}],
    }
).encode()


def _upload(rule: str, path: str, content_type: str, data: bytes) -> Row:
    """A candidate's upload with its digest header (captures, logs)."""
    digest = hashlib.sha256(data).hexdigest()
    headers = {"Content-Type": content_type, "X-Content-SHA256": digest}
    return Row("POST", rule, path, candidates_only(), body=data, headers=headers)


A = "/api/v1/admin/plans"
P = "<plan_id>"


def http_rows(save_body: bytes) -> list[Row]:
    """Every HTTP route's row; `save_body` is a valid save of CAND202301 (the raw route)."""
    admin_plan = f"{A}/{ADMIN_PLAN}"
    return [
        Row("GET", "/healthz", "/healthz", public(200)),
        Row("GET", "/api/v1/openapi.json", "/api/v1/openapi.json", public(200)),
        Row("GET", "/api/v1/keys", "/api/v1/keys", public(200)),
        # Signing in reads credentials from the body; a token sent along changes nothing.
        Row(
            "POST",
            "/api/v1/sessions",
            "/api/v1/sessions",
            public(201),
            json_body={"planId": PLAN_ID, "candidateId": "CAND202305", "authCode": "AUTH1238"},
        ),
        Row("GET", "/static/<path:filename>", "/static/x.js", public(404)),
        # -- admin -------------------------------------------------------------------------------
        Row("GET", f"{A}/{P}", admin_plan, admin_only()),
        Row(
            "PUT",
            f"{A}/{P}",
            admin_plan,
            admin_only(),
            json_body="the sample plan for ADMIN_PLAN",  # replaced by the test
        ),
        Row(
            "PUT",
            f"{A}/{P}/package",
            f"{admin_plan}/package",
            admin_only(),
            body=b"not a zip",
            headers={"X-Content-SHA256": hashlib.sha256(b"not a zip").hexdigest()},
        ),
        Row("POST", f"{A}/{P}/prepare", f"{admin_plan}/prepare", admin_only()),
        Row("POST", f"{A}/{P}/start", f"{admin_plan}/start", admin_only()),
        Row("POST", f"{A}/{P}/end", f"{admin_plan}/end", admin_only(), json_body={}),
        Row(
            "POST",
            f"{A}/{P}/sessions/revoke",
            f"{admin_plan}/sessions/revoke",
            admin_only(),
            json_body={"all": True},
        ),
        Row("POST", f"{A}/{P}/advance", f"{admin_plan}/advance", admin_only(), json_body={}),
        Row("POST", f"{A}/{P}/resync", f"{admin_plan}/resync", admin_only()),
        Row("GET", f"{A}/{P}/candidates", f"{A}/{PLAN_ID}/candidates", admin_only()),
        Row(
            "GET",
            f"{A}/{P}/answers/<candidate_id>/<exam_code>/history",
            f"{A}/{PLAN_ID}/answers/{CANDIDATE}/{EXAM_CODE}/history",
            admin_only(),
        ),
        Row(
            "DELETE",
            f"{A}/{P}/lockouts/<kind>/<account_id>",
            f"{A}/{PLAN_ID}/lockouts/candidate/{CANDIDATE}",
            admin_only(),
        ),
        Row("GET", f"{A}/{P}/dead-letters", f"{A}/{PLAN_ID}/dead-letters", admin_only()),
        Row(
            "POST",
            f"{A}/{P}/dead-letters/replay",
            f"{A}/{PLAN_ID}/dead-letters/replay",
            admin_only(),
            json_body={},
        ),
        Row(
            "GET",
            f"{A}/{P}/candidates/<candidate_id>/captures",
            f"{A}/{PLAN_ID}/candidates/{CANDIDATE}/captures",
            admin_only(),
        ),
        Row(
            "GET",
            f"{A}/{P}/candidates/<candidate_id>/captures/<capture_id>",
            f"{A}/{PLAN_ID}/candidates/{CANDIDATE}/captures/cap1",
            admin_only(),
        ),
        # -- sessions ----------------------------------------------------------------------------
        Row("GET", "/api/v1/me", "/api/v1/me", everyone_own()),
        Row("POST", "/api/v1/me/start", "/api/v1/me/start", candidates_only()),
        Row("POST", "/api/v1/me/advance", "/api/v1/me/advance", candidates_only()),
        Row("GET", "/api/v1/events", "/api/v1/events", everyone_own()),
        Row(
            "GET",
            "/api/v1/plans/<plan_id>/package",
            f"/api/v1/plans/{PLAN_ID}/package",
            # The plan's supervisors may read its questions; no one of another plan may.
            session(
                candidate=ALLOWED,
                supervisor=ALLOWED,
                supervisor_other_group=ALLOWED,
                candidate_other_plan=Answer(403, "forbidden"),
                supervisor_other_plan=Answer(403, "forbidden"),
            ),
        ),
        Row(
            "GET",
            "/api/v1/supervisor/snapshot",
            "/api/v1/supervisor/snapshot",
            session(
                **{p: Answer(403, "supervisors_only") for p in CANDIDATES},
                **{p: ALLOWED for p in SUPERVISORS},  # each their own group's
            ),
        ),
        # Lifting a candidate's lockout: a supervisor of their group; another group's is refused
        # (another plan's supervisor finds no such candidate in their plan: 404, not a refusal).
        Row(
            "DELETE",
            "/api/v1/supervisor/lockouts/<candidate_id>",
            f"/api/v1/supervisor/lockouts/{CANDIDATE}",
            session(
                **{p: Answer(403, "supervisors_only") for p in CANDIDATES},
                supervisor=ALLOWED,
                supervisor_other_group=Answer(403, "other_group"),
                supervisor_other_plan=ALLOWED,
            ),
        ),
        # Restore and history read the token's own answers (no path names a person): another
        # plan's candidate gets their own, as that plan has the same exam code.
        Row(
            "GET",
            "/api/v1/answers/<exam_code>",
            f"/api/v1/answers/{EXAM_CODE}",
            candidates_only(),
        ),
        Row(
            "GET",
            "/api/v1/answers/<exam_code>/history",
            f"/api/v1/answers/{EXAM_CODE}/history",
            candidates_only(),
        ),
        _upload(
            "/api/v1/captures",
            f"/api/v1/captures?kind=webcam&captureId=cap1&capturedAt={_now()}",
            "image/jpeg",
            JPEG,
        ),
        _upload("/api/v1/logs", "/api/v1/logs", "application/json", LOG_BATCH),
        # The raw ASGI save route: CAND202301's save; nobody else may save it.
        Row(
            "POST",
            "/api/v1/answers",
            "/api/v1/answers",
            session(
                candidate=Answer(200),
                candidate_other_plan=Answer(403, "forbidden"),
                **{p: Answer(403, "candidates_only") for p in SUPERVISORS},
            ),
            body=save_body,
            headers={"Content-Type": "application/json"},
        ),
        # -- the web demo's pages and files: public -----------------------------------------------
        Row("GET", "/", "/", public(200)),
        Row("GET", "/<any(candidate, supervisor, admin):page>", "/admin", public(200)),
        Row("GET", "/sw.js", "/sw.js", public(200)),
        Row("GET", "/assets/<path:name>", "/assets/nothing-here.js", public(404)),
        Row("GET", "/pyodide/<version>/<name>", "/pyodide/0/pyodide.js", public(404)),
        Row("GET", "/wheels/<digest>/<name>", "/wheels/0/x.whl", public(404)),
        Row("GET", "/web/config.json", "/web/config.json", public(200)),
    ]


# -- the socket server ---------------------------------------------------------------------------

# The auth frame (the first a socket sends): admitted, or refused with an error frame carrying
# the status and code an HTTP request with that token gets.
ADMITTED = Answer(101)
SOCKET_ADMISSION: Mapping[str, Answer] = {
    **_NO_SESSION,
    **{p: ADMITTED for p in SESSIONS},
}

# Frames from an admitted socket, by type → who is answered how: the frame type answered
# (`pong`, `save_ack`), an `error` frame's code, or None for nothing answered.
SILENT = None
SOCKET_FRAMES: Mapping[str, Mapping[str, str | None]] = {
    "ping": {p: "pong" for p in SESSIONS},
    "pong": {p: SILENT for p in SESSIONS},
    # CAND202301's save (as over HTTP): only its own candidate's is taken.
    "save": {
        "candidate": "save_ack",
        "candidate_other_plan": "error:forbidden",
        **{p: "error:candidates_only" for p in SUPERVISORS},
    },
    "sync_state": {
        **{p: SILENT for p in CANDIDATES},  # noted, not answered
        **{p: "error:candidates_only" for p in SUPERVISORS},
    },
}
