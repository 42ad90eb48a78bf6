"""Bad saves get a clear error and store nothing; saves outside the exam's time are refused,
except late ones within the grace window."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
from quart.typing import TestAppProtocol as App
from quart.typing import TestClientProtocol as Client

from examsync_server.base.clock import iso, utc_now
from examsync_server.config import Settings
from examsync_server.demo.sample import EXAM_CODE, PLAN_ID

from .answer_helpers import T0, encoded, save_body
from .conftest import load_plan, login
from .test_answers import save, started


def nothing_stored(db: sqlite3.Connection, sync_redis: Any) -> bool:
    counts = [
        db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
        for t in ("answer", "answer_history", "answer_sheet", "answer_navigation")
    ]
    return counts == [0, 0, 0, 0] and sync_redis.xlen(f"exam_queue:{PLAN_ID}:answers") == 0


def tampered() -> bytes:
    body = save_body({"Q001": ("2", 1)})
    body["answers"]["Q001"]["value"] = "3"  # changed after the checksum was computed
    return encoded(body)


def with_body(**changes: Any) -> bytes:
    body = save_body({"Q001": ("2", 1)})
    body.update(changes)
    body.pop("checksum")
    from examsync.protocol import checksum

    body["checksum"] = checksum(body)
    return encoded(body)


BAD_SAVES = [
    ("checksum", tampered(), 422, "checksum_mismatch"),
    ("not-json", b"{not json", 400, "invalid_json"),
    ("nan", b'{"x": NaN}', 400, "invalid_json"),
    ("out-of-range", b'{"x": 1e999}', 400, "invalid_json"),  # valid JSON, read as infinity
    ("list", b"[1, 2]", 422, "invalid_request"),
    ("missing-answers", with_body(answers=None), 422, "invalid_request"),
    (
        "zeroed-checksum",
        encoded({**save_body({"Q001": ("2", 1)}), "checksum": "0" * 64}),
        422,
        "checksum_mismatch",
    ),
    (
        "other-candidate",
        encoded(save_body({"Q001": ("2", 1)}, candidate="CAND202302")),
        403,
        "forbidden",
    ),
    ("other-plan", encoded(save_body({"Q001": ("2", 1)}, plan="PLAN999")), 403, "forbidden"),
    (
        "unknown-exam",
        encoded(save_body({"Q001": ("2", 1)}, exam="EXAM999")),
        422,
        "unknown_exam_code",
    ),
    ("unknown-question", encoded(save_body({"Q999": ("2", 1)})), 422, "unknown_quiz_code"),
    ("too-long", encoded(save_body({"Q003": ("12345", 1)})), 422, "value_too_long"),
    (
        "version-zero",
        with_body(
            answers={"Q001": {"value": "2", "version": 0, "updated": "2024-01-15T09:00:00.000Z"}}
        ),
        422,
        "invalid_request",
    ),
    (
        "bool-version",
        with_body(
            answers={"Q001": {"value": "2", "version": True, "updated": "2024-01-15T09:00:00.000Z"}}
        ),
        422,
        "invalid_request",
    ),
    ("no-offset", with_body(timestamp="2024-01-15T09:00:00"), 422, "invalid_request"),
    # Not Unicode: no UTF-8 spelling to store, checksum or hash it with.
    (
        "lone-surrogate",
        encoded(save_body({"Q001": ("2", 1)})).replace(b'"value":"2"', b'"value":"\\ud800"'),
        400,
        "invalid_json",
    ),
    (
        # Beyond what a browser's numbers hold exactly, and what SQLite's INTEGER holds.
        "huge-version",
        with_body(answers={"Q001": {"value": "2", "version": 2**63, "updated": T0}}),
        422,
        "invalid_request",
    ),
    (
        "huge-counter",
        with_body(
            metadata={
                "device": {"type": "PC", "browser": "Chrome 120", "os": "Windows 11"},
                "behavior": {"focusTime": 10**20, "editCount": 1, "keystrokes": 0},
            }
        ),
        422,
        "invalid_request",
    ),
    ("huge", b'{"a": "' + b"x" * (1024 * 1024 + 10) + b'"}', 413, "payload_too_large"),
]


@pytest.mark.parametrize(
    ("body", "status", "code"), [b[1:] for b in BAD_SAVES], ids=[b[0] for b in BAD_SAVES]
)
async def test_bad_save_is_refused_and_nothing_is_stored(
    client: Client,
    admin: dict[str, str],
    db: sqlite3.Connection,
    sync_redis: Any,
    body: bytes,
    status: int,
    code: str,
) -> None:
    auth = await started(client, admin)
    response = await client.post("/api/v1/answers", data=body, headers=auth)
    error = (await response.get_json())["error"]
    assert (response.status_code, error["code"]) == (status, code), error
    assert nothing_stored(db, sync_redis)


async def test_who_may_save(
    client: Client, admin: dict[str, str], db: sqlite3.Connection, sync_redis: Any
) -> None:
    await started(client, admin)
    body = encoded(save_body({"Q001": ("2", 1)}))
    for headers, status, code in (
        ({}, 401, "missing_token"),
        ({"Authorization": "Bearer forged"}, 401, "invalid_token"),
        (admin, 403, "session_only"),
    ):
        response = await client.post("/api/v1/answers", data=body, headers=headers)
        assert response.status_code == status
        assert (await response.get_json())["error"]["code"] == code
    sup = await login(
        client, {"planId": PLAN_ID, "supervisorId": "SUP202301", "authCode": "SUPAUTH01"}
    )
    response = await client.post(
        "/api/v1/answers", data=body, headers={"Authorization": f"Bearer {sup['token']}"}
    )
    assert (await response.get_json())["error"]["code"] == "candidates_only"
    assert nothing_stored(db, sync_redis)


async def test_saves_before_start_are_refused(
    client: Client, admin: dict[str, str], db: sqlite3.Connection, sync_redis: Any
) -> None:
    await load_plan(client, admin)
    session = await login(
        client, {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"}
    )
    response = await save(
        client, {"Authorization": f"Bearer {session['token']}"}, save_body({"Q001": ("2", 1)})
    )
    assert response.status_code == 409
    assert (await response.get_json())["error"]["code"] == "plan_not_started"
    assert nothing_stored(db, sync_redis)


async def test_after_end_only_edits_made_before_it_are_taken_late(
    client: Client, admin: dict[str, str], db: sqlite3.Connection
) -> None:
    auth = await started(client, admin)
    before = iso(utc_now())
    await client.post(f"/api/v1/admin/plans/{PLAN_ID}/end", headers=admin)
    late = await save(client, auth, save_body({"Q001": ("2", 1)}, updated=before))
    body = await late.get_json()
    assert late.status_code == 200 and body["late"] is True
    assert db.execute("SELECT late FROM answer").fetchone()[0] == 1
    after = await save(client, auth, save_body({"Q002": ("1", 1)}, updated=iso(utc_now())))
    assert after.status_code == 409
    assert (await after.get_json())["error"]["code"] == "exam_completed"
    assert db.execute("SELECT COUNT(*) FROM answer").fetchone()[0] == 1


class TestWithoutGrace:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.with_changes(late_grace_seconds=0)

    async def test_no_late_saves_after_the_grace_window(
        self, client: Client, admin: dict[str, str], db: sqlite3.Connection
    ) -> None:
        auth = await started(client, admin)
        before = iso(utc_now())
        await client.post(f"/api/v1/admin/plans/{PLAN_ID}/end", headers=admin)
        response = await save(client, auth, save_body({"Q001": ("2", 1)}, updated=before))
        assert response.status_code == 409
        assert db.execute("SELECT COUNT(*) FROM answer").fetchone()[0] == 0


async def test_restore_of_unknown_exam_and_by_supervisor(
    client: Client, admin: dict[str, str]
) -> None:
    auth = await started(client, admin)
    missing = await client.get("/api/v1/answers/EXAM999", headers=auth)
    assert missing.status_code == 404
    assert (await missing.get_json())["error"]["code"] == "exam_not_found"
    bad = await client.get("/api/v1/answers/..%2Fetc", headers=auth)
    assert bad.status_code in (404, 422)
    sup = await login(
        client, {"planId": PLAN_ID, "supervisorId": "SUP202301", "authCode": "SUPAUTH01"}
    )
    response = await client.get(
        f"/api/v1/answers/{EXAM_CODE}", headers={"Authorization": f"Bearer {sup['token']}"}
    )
    assert (await response.get_json())["error"]["code"] == "candidates_only"


async def post_in_chunks(
    app: App, headers: dict[str, str], chunks: list[bytes], disconnect: bool = False
) -> tuple[int, dict[str, Any], int]:
    """A save streamed in parts, as a real HTTP server hands it over (the test client sends
    one part); returns the status, the JSON answer and how many parts the route read."""
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    if disconnect:
        messages[-1] = {"type": "http.disconnect"}
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        return messages[read - 1]

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/answers",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    await app.app.asgi_app(scope, receive, send)  # type: ignore[attr-defined]
    return sent[0]["status"], json.loads(sent[1]["body"]), read


async def test_a_streamed_body_is_cut_off_once_over_the_limit(
    app: App, client: Client, admin: dict[str, str], db: sqlite3.Connection, sync_redis: Any
) -> None:
    auth = await started(client, admin)
    part = b"x" * (400 * 1024)
    status, body, read = await post_in_chunks(app, auth, [part] * 10)
    assert (status, body["error"]["code"]) == (413, "payload_too_large")
    assert read == 3  # 1.2 MB read of 4 MB sent: refused as soon as it passed 1 MiB
    assert nothing_stored(db, sync_redis)


async def test_a_client_gone_mid_body_stores_nothing(
    app: App, client: Client, admin: dict[str, str], db: sqlite3.Connection, sync_redis: Any
) -> None:
    auth = await started(client, admin)
    whole = encoded(save_body({"Q001": ("2", 1)}))
    status, body, _ = await post_in_chunks(app, auth, [whole[:50], whole[50:]], disconnect=True)
    assert (status, body["error"]["code"]) == (400, "client_disconnected")
    assert nothing_stored(db, sync_redis)
    # and the same save sent whole in two parts is taken
    status, body, _ = await post_in_chunks(app, auth, [whole[:50], whole[50:]])
    assert status == 200, body
    assert body["results"]["Q001"]["status"] == "accepted"
