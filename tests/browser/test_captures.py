"""Webcam captures from the candidate page (a fake camera): JPEG frames at the plan's
interval, through the SDK's upload queue, into the server's `capture` table — also those
taken while the network was down."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from playwright.sync_api import BrowserContext

from integration.conftest import ServerProcess

from .conftest import PLAN_ID, admin_ok, load_plan, open_candidate, read_db

CANDIDATE, CODE = "CAND202301", "AUTH1234"
INTERVAL = 2  # seconds between captures (the plan's camera_capture_interval)


def captures(server: ServerProcess) -> list[tuple[str, str, int, str, str]]:
    rows = read_db(
        server,
        "SELECT capture_id, content_type, size, sha256, path FROM capture"
        " WHERE candidate_id = ? ORDER BY captured_at",
        CANDIDATE,
    )
    return [tuple(row) for row in rows]


def test_webcam_frames_reach_the_server_even_when_taken_offline(
    server: ServerProcess, new_context: Callable[[], BrowserContext]
) -> None:
    from examsync_server.demo.sample import sample_package, sample_plan

    plan = sample_plan(candidates=2)
    plan["exam_plan"]["camera_capture_interval"] = INTERVAL
    load_plan(server, plan, sample_package())
    for step in ("prepare", "start", "advance"):
        admin_ok(server, "POST", f"/api/v1/admin/plans/{PLAN_ID}/{step}")

    context = new_context()
    page = open_candidate(context, server, CANDIDATE, CODE)
    page.wait_for_function(
        "() => Number(document.querySelector('#camera-status')?.dataset.stored) >= 1"
    )
    context.set_offline(True)
    page.wait_for_function("() => window.examsyncDemo.page.uploads_pending() >= 2")
    stored_before = len(captures(server))
    context.set_offline(False)
    page.wait_for_function(
        "(n) => Number(document.querySelector('#camera-status').dataset.stored) >= n",
        arg=stored_before + 2,
    )

    rows = captures(server)
    assert len(rows) >= stored_before + 2
    for _capture_id, content_type, size, sha256, path in rows:
        assert content_type == "image/jpeg"
        data = (server.data_dir / "files" / path).read_bytes()
        assert len(data) == size and data[:3] == b"\xff\xd8\xff"  # a JPEG
        assert hashlib.sha256(data).hexdigest() == sha256
    assert len({row[0] for row in rows}) == len(rows)  # each capture once
