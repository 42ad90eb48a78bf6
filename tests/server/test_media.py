"""Captures and log batches (seed 002 미디어, 로그): checked, stored once, acknowledged after the
commit, the blob in the file store, the last five minutes in Redis; bad uploads store nothing."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from examsync_server.config import Settings
from examsync_server.demo.sample import PLAN_ID, sample_plan

from .conftest import load_plan, login
from .test_answers import started

CAND = "CAND202301"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + bytes(range(256)) * 40  # ~10 KB
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 2000
OGG = b"OggS" + b"\x01" * 5000


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def post_capture(
    client: Client,
    auth: dict[str, str],
    data: bytes = JPEG,
    *,
    kind: str = "webcam",
    capture_id: str = "cap-0001",
    captured_at: str = "2024-01-15T09:00:05.000Z",
    content_type: str = "image/jpeg",
    digest: str | None = None,
) -> tuple[int, dict[str, Any], Any]:
    response = await client.post(
        "/api/v1/captures",
        query_string={"kind": kind, "captureId": capture_id, "capturedAt": captured_at},
        data=data,
        headers={
            **auth,
            "Content-Type": content_type,
            "X-Content-SHA256": digest if digest is not None else sha(data),
        },
    )
    return response.status_code, await response.get_json(), response.headers


def log_body(batch_id: str = "b-0001", entries: int = 3) -> bytes:
    return json.dumps(
        {
            "batchId": batch_id,
            "entries": [
                {
                    "at": f"2024-01-15T09:00:{i:02d}.000Z",
                    "level": "info",
                    "event": "focus_lost",
                    "data": {"n": i},
                }
                for i in range(entries)
            ],
        }
    ).encode()


async def post_logs(
    client: Client, auth: dict[str, str], body: bytes, digest: str | None = None
) -> tuple[int, dict[str, Any]]:
    response = await client.post(
        "/api/v1/logs",
        data=body,
        headers={
            **auth,
            "Content-Type": "application/json",
            "X-Content-SHA256": digest if digest is not None else sha(body),
        },
    )
    return response.status_code, await response.get_json()


def rows(db: sqlite3.Connection, table: str) -> list[dict[str, Any]]:
    return [dict(r) for r in db.execute(f"SELECT * FROM {table}")]


async def test_a_capture_is_stored_once_and_acknowledged_after_the_commit(
    client: Client,
    admin: dict[str, str],
    db: sqlite3.Connection,
    sync_redis: Any,
    settings: Settings,
) -> None:
    auth = await started(client, admin)
    status, ack, _ = await post_capture(client, auth)
    assert status == 200, ack
    assert ack["captureId"] == "cap-0001" and ack["status"] == "stored"
    assert (ack["sha256"], ack["size"]) == (sha(JPEG), len(JPEG))
    [row] = rows(db, "capture")  # committed before the answer came back
    assert row["candidate_id"] == CAND and row["kind"] == "webcam"
    assert row["content_type"] == "image/jpeg" and row["captured_at"] == "2024-01-15T09:00:05.000Z"
    blob = settings.storage.files_dir / row["path"]
    assert blob.read_bytes() == JPEG and blob.name == f"{sha(JPEG)}.jpg"
    window = sync_redis.xrange(f"exam:{PLAN_ID}:user:{CAND}:media")
    assert [fields["captureId"] for _, fields in window] == ["cap-0001"]
    assert 0 < sync_redis.ttl(f"exam:{PLAN_ID}:user:{CAND}:media") <= 600

    # the same capture again (a retry): recognised, not stored twice, not refused as too soon
    status, again, _ = await post_capture(client, auth)
    assert (status, again["status"]) == (200, "duplicate")
    assert len(rows(db, "capture")) == 1
    assert len(sync_redis.xrange(f"exam:{PLAN_ID}:user:{CAND}:media")) == 1

    # the admin sees it and can fetch it
    listed = await client.get(
        f"/api/v1/admin/plans/{PLAN_ID}/candidates/{CAND}/captures", headers=admin
    )
    assert [c["captureId"] for c in (await listed.get_json())["captures"]] == ["cap-0001"]
    fetched = await client.get(
        f"/api/v1/admin/plans/{PLAN_ID}/candidates/{CAND}/captures/cap-0001", headers=admin
    )
    assert fetched.status_code == 200 and await fetched.get_data() == JPEG
    assert fetched.headers["Content-Type"] == "image/jpeg"


async def test_a_capture_time_before_the_year_1000_is_kept_as_written(
    client: Client, admin: dict[str, str], db: sqlite3.Connection
) -> None:
    """Found by tests/fuzz: the time was normalised to "130-04-16T…" (strftime's %Y does not
    pad the year), which no ISO 8601 reader takes, and the save path answered 500."""
    auth = await started(client, admin)
    status, ack, _ = await post_capture(client, auth, captured_at="0130-04-16T07:29:36.5Z")
    assert status == 200, ack
    [row] = rows(db, "capture")
    assert row["captured_at"] == "0130-04-16T07:29:36.500Z"


async def test_captures_closer_than_half_the_plans_interval_are_refused(
    client: Client, admin: dict[str, str], db: sqlite3.Connection
) -> None:
    auth = await started(client, admin)  # the sample plan captures every 10 s
    assert (await post_capture(client, auth, capture_id="c1"))[0] == 200
    status, error, headers = await post_capture(client, auth, capture_id="c2")
    assert (status, error["error"]["code"]) == (429, "capture_too_frequent")
    assert 1 <= int(headers["Retry-After"]) <= 5
    # another kind has its own slot
    status, ack, _ = await post_capture(
        client, auth, PNG, kind="screen", capture_id="s1", content_type="image/png"
    )
    assert status == 200, ack
    assert [r["capture_id"] for r in rows(db, "capture")] == ["c1", "s1"]


BAD_CAPTURES = [
    ("unknown-kind", {"kind": "hologram"}, 422, "unknown_capture_kind"),
    ("bad-id", {"capture_id": "../../etc"}, 422, "invalid_request"),
    ("naive-time", {"captured_at": "2024-01-15T09:00:05"}, 422, "invalid_request"),
    ("not-a-time", {"captured_at": "soon"}, 422, "invalid_request"),
    ("wrong-digest", {"digest": "0" * 64}, 422, "checksum_mismatch"),
    ("no-digest", {"digest": ""}, 400, "invalid_checksum_header"),
    ("png-called-jpeg", {"data": PNG}, 422, "content_mismatch"),
    ("audio-as-webcam", {"data": OGG, "content_type": "audio/ogg"}, 415, "unsupported_media_type"),
    ("too-large", {"data": JPEG * 30}, 413, "payload_too_large"),
    ("html", {"data": b"<html>", "content_type": "text/html"}, 415, "unsupported_media_type"),
]


@pytest.mark.parametrize(
    ("changes", "status", "code"), [c[1:] for c in BAD_CAPTURES], ids=[c[0] for c in BAD_CAPTURES]
)
async def test_bad_captures_are_refused_and_nothing_is_stored(
    client: Client,
    admin: dict[str, str],
    db: sqlite3.Connection,
    sync_redis: Any,
    settings: Settings,
    changes: dict[str, Any],
    status: int,
    code: str,
) -> None:
    auth = await started(client, admin)
    got, body, _ = await post_capture(client, auth, **changes)
    assert (got, body["error"]["code"]) == (status, code), body
    assert rows(db, "capture") == []
    assert not (settings.storage.files_dir / "captures").exists()
    assert sync_redis.xlen(f"exam_queue:{PLAN_ID}:media") == 0


async def test_capture_kinds_follow_the_plans_camera_flags(
    client: Client, admin: dict[str, str], db: sqlite3.Connection
) -> None:
    plan = sample_plan()
    plan["exam_plan"] |= {"requires_camera": False, "allows_mobile_camera": False}
    await load_plan(client, admin, plan)
    assert (await client.post(f"/api/v1/admin/plans/{PLAN_ID}/start", headers=admin)).is_json
    session = await login(client, {"planId": PLAN_ID, "candidateId": CAND, "authCode": "AUTH1234"})
    auth = {"Authorization": f"Bearer {session['token']}"}
    for kind in ("webcam", "mobile"):
        status, body, _ = await post_capture(client, auth, kind=kind, capture_id=kind)
        assert (status, body["error"]["code"]) == (409, "capture_not_enabled")
    status, body, _ = await post_capture(
        client, auth, OGG, kind="audio", capture_id="a1", content_type="audio/ogg"
    )
    assert status == 200, body
    assert [r["kind"] for r in rows(db, "capture")] == ["audio"]


async def test_who_may_upload_and_when(
    client: Client, admin: dict[str, str], db: sqlite3.Connection
) -> None:
    await load_plan(client, admin)
    session = await login(client, {"planId": PLAN_ID, "candidateId": CAND, "authCode": "AUTH1234"})
    auth = {"Authorization": f"Bearer {session['token']}"}
    status, body, _ = await post_capture(client, auth)
    assert (status, body["error"]["code"]) == (409, "plan_not_started")
    status, body = await post_logs(client, auth, log_body())
    assert (status, body["error"]["code"]) == (409, "plan_not_started")
    assert (await client.post(f"/api/v1/admin/plans/{PLAN_ID}/start", headers=admin)).is_json
    assert (await post_capture(client, {}))[1]["error"]["code"] == "missing_token"
    sup = await login(
        client, {"planId": PLAN_ID, "supervisorId": "SUP202301", "authCode": "SUPAUTH01"}
    )
    sup_auth = {"Authorization": f"Bearer {sup['token']}"}
    assert (await post_capture(client, sup_auth))[1]["error"]["code"] == "candidates_only"
    assert (await post_logs(client, sup_auth, log_body()))[1]["error"]["code"] == (
        "candidates_only"
    )
    assert rows(db, "capture") == [] and rows(db, "log_batch") == []


async def test_a_log_batch_is_stored_once_with_its_entries_in_the_window(
    client: Client,
    admin: dict[str, str],
    db: sqlite3.Connection,
    sync_redis: Any,
    settings: Settings,
) -> None:
    auth = await started(client, admin)
    body = log_body(entries=3)
    status, ack = await post_logs(client, auth, body)
    assert status == 200, ack
    assert (ack["batchId"], ack["status"], ack["size"]) == ("b-0001", "stored", len(body))
    [row] = rows(db, "log_batch")
    assert (row["entries"], row["first_at"], row["last_at"]) == (
        3,
        "2024-01-15T09:00:00.000Z",
        "2024-01-15T09:00:02.000Z",
    )
    assert (settings.storage.files_dir / row["path"]).read_bytes() == body
    window = sync_redis.xrange(f"exam:{PLAN_ID}:user:{CAND}:logs")
    assert [json.loads(f["entry"])["data"] for _, f in window] == [{"n": 0}, {"n": 1}, {"n": 2}]
    status, again = await post_logs(client, auth, body)
    assert (status, again["status"]) == (200, "duplicate")
    assert len(rows(db, "log_batch")) == 1
    assert len(sync_redis.xrange(f"exam:{PLAN_ID}:user:{CAND}:logs")) == 3


def entries_with(**entry: Any) -> bytes:
    base = {"at": "2024-01-15T09:00:00.000Z", "level": "info", "event": "x"}
    return json.dumps({"batchId": "b1", "entries": [base | entry]}).encode()


BAD_LOGS = [
    ("not-json", b"{nope", 400, "invalid_json"),
    ("list", b"[]", 422, "invalid_request"),
    ("extra-key", json.dumps({"batchId": "b", "entries": [], "x": 1}).encode(), 422, None),
    ("no-entries", json.dumps({"batchId": "b", "entries": []}).encode(), 422, None),
    ("bad-batch-id", json.dumps({"batchId": "a/b", "entries": [{}]}).encode(), 422, None),
    ("bad-level", entries_with(level="loud"), 422, None),
    ("long-event", entries_with(event="e" * 65), 422, None),
    ("bad-time", entries_with(at="yesterday"), 422, None),
    ("data-not-object", entries_with(data=[1]), 422, None),
    ("huge-data", entries_with(data={"x": "y" * 5000}), 422, None),
    ("too-large", b" " * (256 * 1024 + 1), 413, "payload_too_large"),
    # Found by tests/fuzz: a lone surrogate (valid JSON, no Unicode) reached Redis and was 500.
    ("lone-surrogate-data", entries_with(data={"\ud800": 1}), 400, "invalid_json"),
    ("lone-surrogate-event", entries_with(event="\udfff"), 400, "invalid_json"),
    ("nan", entries_with(data={"x": float("nan")}), 400, "invalid_json"),
]


@pytest.mark.parametrize(
    ("body", "status", "code"), [b[1:] for b in BAD_LOGS], ids=[b[0] for b in BAD_LOGS]
)
async def test_bad_log_batches_are_refused_and_nothing_is_stored(
    client: Client,
    admin: dict[str, str],
    db: sqlite3.Connection,
    settings: Settings,
    body: bytes,
    status: int,
    code: str | None,
) -> None:
    auth = await started(client, admin)
    got, answer = await post_logs(client, auth, body)
    assert (got, answer["error"]["code"]) == (status, code or "invalid_request"), answer
    assert rows(db, "log_batch") == []
    assert not Path(settings.storage.files_dir / "logs").exists()


async def test_a_log_batch_with_a_wrong_digest_is_refused(
    client: Client, admin: dict[str, str], db: sqlite3.Connection
) -> None:
    auth = await started(client, admin)
    status, answer = await post_logs(client, auth, log_body(), digest=sha(b"other"))
    assert (status, answer["error"]["code"]) == (422, "checksum_mismatch")
    assert rows(db, "log_batch") == []
