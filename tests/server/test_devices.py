"""One candidate on several devices, through the real server (HTTP, Redis, SQLite): the edit
made last wins whatever order edits arrive in, and every ack tells the truth about what the
server keeps (docs/protocol.md, "Several devices: the latest edit wins")."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from quart.typing import TestClientProtocol as Client

from examsync.messages import AckStatus, AnswerResult, RestoreResponse, SaveAck
from examsync.protocol import format_timestamp, parse_timestamp, value_sha256
from examsync_server.base.clock import iso, utc_now
from examsync_server.demo.sample import EXAM_CODE, PLAN_ID
from examsync_server.store.answers import QueuedSave, apply_batch, wire_time
from examsync_server.store.sqlite import Database, connect_sync

from .answer_helpers import at, save_body
from .conftest import load_plan, login, plan_with
from .test_answers import save

CACHE_KEY = f"exam:{PLAN_ID}:test:{EXAM_CODE}:user:CAND202301"
CANDIDATE = {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"}


class Device:
    """One device of candidate CAND202301: its own session and device id."""

    def __init__(self, client: Client, auth: dict[str, str], device_id: str) -> None:
        self.client, self.auth, self.id = client, auth, device_id

    async def save(self, quiz: str, value: str, version: int, made: str) -> AnswerResult:
        body = save_body({quiz: (value, version)}, updated=made, device=self.id)
        response = await save(self.client, self.auth, body)
        assert response.status_code == 200, await response.get_json()
        ack = SaveAck.from_wire(await response.get_json())  # the SDK's own checks
        result = ack.results[quiz]
        # The receipt names what the server keeps, as the SDK checks it.
        kept = value if result.current_value is None else result.current_value
        assert result.receipt is not None
        assert result.receipt.payload.is_for(
            PLAN_ID, "CAND202301", EXAM_CODE, quiz, result.current_version, kept
        )
        return result

    async def restore(self, sync_redis: Any) -> dict[str, tuple[str, int, str]]:
        """(value, version, updated) per answer; the cache and SQLite must say the same."""
        answers = []
        for _ in range(2):
            response = await self.client.get(f"/api/v1/answers/{EXAM_CODE}", headers=self.auth)
            restored = RestoreResponse.from_wire(await response.get_json())
            answers.append(
                {q: (a.value, a.version, a.updated) for q, a in restored.answers.items()}
            )
            sync_redis.delete(CACHE_KEY)  # the second read comes from SQLite
        assert answers[0] == answers[1]
        return answers[0]


async def two_devices(client: Client, admin: dict[str, str]) -> tuple[Device, Device]:
    """Both signed in under the `merge` policy, so that each may save whenever it likes (under
    `single`, test_device_policy.py, B's sign-in would refuse A's later edits)."""
    await load_plan(client, admin, plan=plan_with(("exam_plan.device_policy", "merge")))
    response = await client.post(f"/api/v1/admin/plans/{PLAN_ID}/start", headers=admin)
    assert response.status_code == 200
    devices = []
    for device_id in ("device-A", "device-B"):
        session = await login(client, {**CANDIDATE, "deviceId": device_id})
        devices.append(Device(client, {"Authorization": f"Bearer {session['token']}"}, device_id))
    return devices[0], devices[1]


async def test_the_issue_sequence_keeps_the_last_edit(
    client: Client, admin: dict[str, str], sync_redis: Any
) -> None:
    """A answers, B restores and changes it, A changes it again from its old floor."""
    a, b = await two_devices(client, admin)
    first = await a.save("Q001", "1", 1, at(1))
    assert (first.status, first.current_version) == (AckStatus.ACCEPTED, 1)
    assert (await b.restore(sync_redis))["Q001"] == ("1", 1, at(1))
    on_b = await b.save("Q001", "2", 2, at(2))
    assert (on_b.status, on_b.current_version) == (AckStatus.ACCEPTED, 2)
    # A still knows version 1, so it proposes 2: the server already holds a 2, and A's edit
    # is the later one, so it is kept as version 3.
    back_on_a = await a.save("Q001", "3", 2, at(3))
    assert (back_on_a.status, back_on_a.current_version) == (AckStatus.ACCEPTED, 3)
    assert (await a.restore(sync_redis))["Q001"] == ("3", 3, at(3))


async def test_an_earlier_edit_arriving_last_is_superseded_with_the_kept_edit(
    client: Client, admin: dict[str, str], sync_redis: Any, db: sqlite3.Connection
) -> None:
    a, b = await two_devices(client, admin)
    later = await b.save("Q002", "3", 1, at(10))  # made last, arrived first
    assert later.status is AckStatus.ACCEPTED
    earlier = await a.save("Q002", "1", 1, at(5))  # made offline before, synced now
    assert (earlier.status, earlier.version, earlier.current_version) == (
        AckStatus.SUPERSEDED,
        1,
        1,
    )
    assert (earlier.current_value, earlier.current_updated) == ("3", at(10))
    assert earlier.receipt is not None
    assert earlier.receipt.payload.value_sha256 == value_sha256("3")
    assert (await a.restore(sync_redis))["Q002"] == ("3", 1, at(10))
    history = db.execute(
        "SELECT value, result, device FROM answer_history WHERE quiz_code = 'Q002'"
        " ORDER BY history_id"
    ).fetchall()
    assert [tuple(r) for r in history] == [
        ("3", "accepted", "device-B"),
        ("1", "superseded", "device-A"),  # kept, as it arrived
    ]


async def test_a_device_clock_far_ahead_is_clamped_to_when_the_server_had_the_edit(
    client: Client, admin: dict[str, str], sync_redis: Any
) -> None:
    a, b = await two_devices(client, admin)
    tomorrow = format_timestamp(utc_now().timestamp() + 86_400)
    ahead = await a.save("Q003", "1", 1, tomorrow)
    assert ahead.status is AckStatus.ACCEPTED
    kept_at = (await a.restore(sync_redis))["Q003"][2]
    assert parse_timestamp(kept_at) <= utc_now().timestamp()  # not tomorrow
    # An edit made on B after that (on a right clock) wins; unclamped, A's would for a day.
    # (Device ids break a tie within the same millisecond: "device-B" > "device-A".)
    now = await b.save("Q003", "2", 2, iso(utc_now()))
    assert (now.status, now.current_version) == (AckStatus.ACCEPTED, 2)
    assert (await b.restore(sync_redis))["Q003"][0] == "2"


async def test_the_same_value_later_moves_the_kept_edit_up(
    client: Client, admin: dict[str, str], sync_redis: Any
) -> None:
    """A types "1", later types "1" again; an edit B made in between must lose to the second."""
    a, b = await two_devices(client, admin)
    await a.save("Q001", "1", 1, at(1))
    again = await a.save("Q001", "1", 2, at(3))
    assert (again.status, again.current_version) == (AckStatus.DUPLICATE, 1)
    assert (await a.restore(sync_redis))["Q001"] == ("1", 1, at(3))  # the stamp moved, not v
    between = await b.save("Q001", "2", 2, at(2))
    assert (between.status, between.current_value) == (AckStatus.SUPERSEDED, "1")
    assert between.current_updated == at(3)
    assert (await b.restore(sync_redis))["Q001"] == ("1", 1, at(3))


async def test_a_retried_edit_is_a_duplicate_of_the_same_kept_version(
    client: Client, admin: dict[str, str], db: sqlite3.Connection
) -> None:
    a, _ = await two_devices(client, admin)
    await a.save("Q001", "1", 1, at(1))
    first = await a.save("Q001", "2", 2, at(2))
    retry = await a.save("Q001", "2", 2, at(2))  # its ack was lost on the way
    assert (first.status, retry.status) == (AckStatus.ACCEPTED, AckStatus.DUPLICATE)
    assert first.current_version == retry.current_version == 2
    assert first.receipt is not None and retry.receipt is not None
    assert first.receipt.payload.version == retry.receipt.payload.version == 2
    history = db.execute("SELECT COUNT(*) FROM answer_history WHERE quiz_code = 'Q001'")
    assert history.fetchone()[0] == 2  # the retry added nothing


async def test_edits_made_in_the_same_millisecond_are_ordered_by_device_id(
    client: Client, admin: dict[str, str], sync_redis: Any
) -> None:
    a, b = await two_devices(client, admin)
    await a.save("Q004", "from A", 1, at(7))
    tie = await b.save("Q004", "from B", 1, at(7))
    assert (tie.status, tie.current_version) == (AckStatus.ACCEPTED, 2)  # "device-B" > "-A"
    lost = await a.save("Q004", "from A again", 2, at(7))
    assert (lost.status, lost.current_value) == (AckStatus.SUPERSEDED, "from B")
    assert (await a.restore(sync_redis))["Q004"] == ("from B", 2, at(7))


def queued(n: int, value: str, made: float, device: str) -> QueuedSave:
    """Save `n` of a batch, of Q001, as the persister reads it off the stream (received now)."""
    body = save_body({"Q001": (value, 1)}, updated=at(made), device=device)
    return QueuedSave(f"{int(utc_now().timestamp() * 1000)}-{n}", "r", "n", PLAN_ID,
                      "CAND202301", EXAM_CODE, iso(utc_now()), False, body)  # fmt: skip


async def test_one_batch_judges_each_edit_against_those_before_it(tmp_path: Path) -> None:
    """Edits of one answer in one batch (the persister's group commit): each is judged against
    what the earlier ones left, though nothing is written until the batch ends."""
    path = tmp_path / "answers.sqlite3"
    await (await Database.open(path)).close()  # every migration
    conn = connect_sync(path)
    try:
        first = apply_batch(
            conn,
            [
                queued(0, "1", 1, "A"),
                queued(1, "2", 3, "B"),
                queued(2, "3", 2, "A"),  # made before B's: the kept value is this batch's
                queued(3, "2", 4, "A"),  # B's value again, later: the stamp moves to (4, A)
                queued(4, "9", 3.5, "B"),  # so this one, made before it, loses
            ],
            "2024-01-15T10:00:00.000Z",
        )
        verdicts = [(o.status.value, o.kept.version, o.current_value) for [o] in first.outcomes]
        assert verdicts == [
            ("accepted", 1, None),
            ("accepted", 2, None),
            ("superseded", 2, "2"),
            ("duplicate", 2, None),
            ("superseded", 2, "2"),
        ]
        [sheet] = first.sheets
        assert sheet.answers["Q001"] == {"value": "2", "version": 2, "updated": at(4)}
        second = apply_batch(
            conn,
            [queued(5, "2", 5, "C"), queued(6, "5", 6, "C")],  # a later stamp, then an edit
            "2024-01-15T10:00:01.000Z",
        )
        assert [(o.status.value, o.kept.version) for [o] in second.outcomes] == [
            ("duplicate", 2),
            ("accepted", 3),
        ]
        kept = conn.execute("SELECT version, value, updated, device FROM answer").fetchone()
        assert tuple(kept) == (3, "5", at(6), "C")
        history = conn.execute("SELECT value, version, result, device FROM answer_history")
        assert [tuple(r) for r in history] == [
            ("1", 1, "accepted", "A"),
            ("2", 2, "accepted", "B"),
            ("3", 1, "superseded", "A"),
            ("9", 1, "superseded", "B"),
            ("5", 3, "accepted", "C"),
        ]
    finally:
        conn.close()


@given(st.integers(min_value=-(10**12), max_value=4 * 10**12))
def test_wire_time_is_format_timestamp_to_the_millisecond(edited_at: int) -> None:
    assert wire_time(edited_at) == format_timestamp(edited_at / 1000)
