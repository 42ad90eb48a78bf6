"""The persister's failure handling (seed 002 §5.1): a crashed consumer's entries are claimed
and persisted exactly once; an entry that cannot be persisted is dead-lettered without
blocking the others, announced, listed and replayed."""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from examsync_server.config import Settings
from examsync_server.demo.sample import EXAM_CODE, PLAN_ID
from examsync_server.runtime import Runtime
from examsync_server.store.answers import QueuedSave, apply_batch
from examsync_server.store.sqlite import connect_sync

from .answer_helpers import at, save_body
from .conftest import eventually, load_plan, login
from .test_answers import save, started
from .test_end import next_of, socket

STREAM = f"exam_queue:{PLAN_ID}:answers"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_changes(claim_idle_ms=300, max_persist_attempts=2)


def queue_entry(body: dict[str, Any], rid: str = "") -> dict[str, str]:
    """An entry as the web handler writes it (answers/intake.py)."""
    return {
        "rid": rid or secrets.token_hex(8),
        "node": "gone-node",
        "plan": PLAN_ID,
        "cand": body["userId"],
        "exam": body["testCode"],
        "at": body["timestamp"],
        "late": "0",
        "p": json.dumps(body, ensure_ascii=False),
    }


async def test_entries_of_a_dead_consumer_are_claimed_and_persisted_once(
    client: Client,
    admin: dict[str, str],
    sync_redis: Any,
    db: sqlite3.Connection,
    settings: Settings,
) -> None:
    await started(client, admin)
    # A consumer read two entries and died. The first it had even committed (its process
    # died between the commit and the XACK), the second not.
    first = save_body({"Q001": ("2", 1)})
    second = save_body({"Q002": ("1", 1)})
    first_id = sync_redis.xadd(STREAM, queue_entry(first))
    sync_redis.xadd(STREAM, queue_entry(second))
    sync_redis.xreadgroup("persisters", "dead-consumer", {STREAM: ">"}, count=10)
    conn = connect_sync(settings.storage.sqlite_path)
    apply_batch(
        conn,
        [
            QueuedSave(
                first_id,
                "r",
                "gone-node",
                PLAN_ID,
                "CAND202301",
                EXAM_CODE,
                first["timestamp"],
                False,
                first,
            )
        ],
        "2024-01-15T09:00:01.000Z",
    )
    conn.close()

    await eventually(lambda: sync_redis.xpending(STREAM, "persisters")["pending"] == 0)
    rows = db.execute("SELECT quiz_code, version FROM answer ORDER BY quiz_code").fetchall()
    assert [tuple(r) for r in rows] == [("Q001", 1), ("Q002", 1)]
    history = db.execute("SELECT quiz_code, COUNT(*) FROM answer_history GROUP BY quiz_code")
    assert dict(history.fetchall()) == {"Q001": 1, "Q002": 1}  # no second row for Q001
    assert sync_redis.xlen(STREAM) == 0  # acknowledged entries are deleted


async def test_a_poison_entry_is_dead_lettered_alerted_and_replayed(
    client: Client,
    admin: dict[str, str],
    sync_redis: Any,
    db: sqlite3.Connection,
    runtime: Runtime,
) -> None:
    auth = await started(client, admin)
    supervisor = await login(
        client, {"planId": PLAN_ID, "supervisorId": "SUP202301", "authCode": "SUPAUTH01"}
    )
    # Make one value impossible to store, as a full disk or a broken row would.
    db.execute(
        "CREATE TRIGGER poison BEFORE INSERT ON answer_history WHEN NEW.value = 'poison'"
        " BEGIN SELECT RAISE(ABORT, 'cannot store this'); END"
    )
    db.commit()
    async with socket(runtime, supervisor["token"]) as sup_ws:
        sync_redis.xadd(STREAM, queue_entry(save_body({"Q001": ("poison", 1)})))
        # A good save queued behind it still gets through.
        response = await save(client, auth, save_body({"Q002": ("3", 1)}))
        assert response.status_code == 200
        alert = await next_of(sup_ws, "alert", timeout=5)
    assert alert["kind"] == "dead_letter" and alert["candidateId"] == "CAND202301"
    assert "cannot store this" in alert["error"]
    assert sync_redis.xlen(f"exam_queue:{PLAN_ID}:dead") == 1
    assert sync_redis.xrange("queue:alerts")[-1][1]["type"] == "dead_letter"

    listing = await (
        await client.get(f"/api/v1/admin/plans/{PLAN_ID}/dead-letters", headers=admin)
    ).get_json()
    [letter] = listing["deadLetters"]
    assert letter["attempts"] >= 2 and letter["replayedAt"] is None
    status = await (await client.get(f"/api/v1/admin/plans/{PLAN_ID}", headers=admin)).get_json()
    assert status["deadLetters"] == 1

    db.execute("DROP TRIGGER poison")
    db.commit()
    replay = await client.post(
        f"/api/v1/admin/plans/{PLAN_ID}/dead-letters/replay",
        json={"ids": [letter["id"]]},
        headers=admin,
    )
    assert (await replay.get_json())["replayed"] == [letter["id"]]
    await eventually(
        lambda: (
            db.execute("SELECT value FROM answer WHERE quiz_code = 'Q001'").fetchone() is not None
        )
    )
    again = await client.post(
        f"/api/v1/admin/plans/{PLAN_ID}/dead-letters/replay",
        json={"ids": [letter["id"]]},
        headers=admin,
    )
    assert again.status_code == 404
    assert (await again.get_json())["error"] == {
        "code": "dead_letter_not_found",
        "message": "some ids are not unreplayed dead letters of this plan",
        "details": {"ids": [letter["id"]]},
    }


async def test_an_entry_sqlite_cannot_bind_is_dead_lettered_not_retried_forever(
    client: Client, admin: dict[str, str], sync_redis: Any, db: sqlite3.Connection
) -> None:
    """Not an sqlite3.Error: binding 2**63 raises OverflowError. Validation refuses such a
    version now; an entry queued before it did must still not block the stream behind it."""
    auth = await started(client, admin)
    sync_redis.xadd(STREAM, queue_entry(save_body({"Q001": ("2", 2**63)})))
    response = await save(client, auth, save_body({"Q002": ("3", 1)}))
    assert response.status_code == 200
    await eventually(lambda: db.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0] == 1)
    assert "too large" in db.execute("SELECT error FROM dead_letter").fetchone()[0]
    rows = db.execute("SELECT quiz_code, version FROM answer").fetchall()
    assert [tuple(r) for r in rows] == [("Q002", 1)]


@pytest.mark.parametrize("settings_overrides", [{"ack_timeout_seconds": 1.0}])
async def test_acks_that_fail_once_do_not_stop_later_batches_acks(
    client: Client,
    admin: dict[str, str],
    db: sqlite3.Connection,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch committed but whose acks could not be made (a bug) stays pending and is read
    again; the batches after it are acknowledged as before (each awaits the one before)."""
    auth = await started(client, admin)
    assert runtime.persister is not None
    make_acks = runtime.persister._acks
    failures = iter([ValueError("a bug")])

    def failing_once(committed: Any) -> Any:
        for failure in failures:
            raise failure
        return make_acks(committed)

    monkeypatch.setattr(runtime.persister, "_acks", failing_once)
    first = await save(client, auth, save_body({"Q001": ("2", 1)}))
    assert first.status_code == 503  # committed, but its ack never came: the client retries
    again = await save(client, auth, save_body({"Q001": ("2", 1)}))
    assert (await again.get_json())["results"]["Q001"]["status"] == "duplicate"
    later = await save(client, auth, save_body({"Q002": ("3", 1)}))
    assert (await later.get_json())["results"]["Q002"]["status"] == "accepted"
    assert db.execute("SELECT COUNT(*) FROM answer").fetchone()[0] == 2


async def test_an_unreadable_entry_goes_straight_to_the_dead_letters(
    client: Client, admin: dict[str, str], sync_redis: Any, db: sqlite3.Connection
) -> None:
    await load_plan(client, admin)
    await client.post(f"/api/v1/admin/plans/{PLAN_ID}/start", headers=admin)
    sync_redis.xadd(STREAM, {"rid": "x", "p": "{broken"})
    await eventually(lambda: db.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0] == 1)
    assert "unreadable" in db.execute("SELECT error FROM dead_letter").fetchone()[0]


@pytest.mark.parametrize("settings_overrides", [{"ack_timeout_seconds": 1.0}])
async def test_no_ack_while_sqlite_is_locked_and_the_save_lands_once_it_frees(
    client: Client, admin: dict[str, str], db: sqlite3.Connection, settings: Settings
) -> None:
    auth = await started(client, admin)
    blocker = sqlite3.connect(settings.storage.sqlite_path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the database
    try:
        response = await save(client, auth, save_body({"Q001": ("2", 1)}))
        assert response.status_code == 503
        assert (await response.get_json())["error"]["code"] == "ack_timeout"
        assert response.headers["Retry-After"]
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    # the queued save is committed once the lock is gone; the client's retry is a duplicate
    await eventually(lambda: db.execute("SELECT COUNT(*) FROM answer").fetchone()[0] == 1)
    again = await save(client, auth, save_body({"Q001": ("2", 1)}))
    assert (await again.get_json())["results"]["Q001"]["status"] == "duplicate"


@pytest.mark.parametrize("settings_overrides", [{"ack_timeout_seconds": 1.0}])
async def test_a_full_database_acks_nothing_and_dead_letters_for_replay(
    client: Client,
    admin: dict[str, str],
    db: sqlite3.Connection,
    runtime: Runtime,
    sync_redis: Any,
) -> None:
    auth = await started(client, admin)
    assert runtime.persister is not None
    conn = runtime.persister.writer.conn  # idle: no save in flight
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full, as SQLite sees it
    response = await save(client, auth, save_body({"Q005": ("가" * 5000, 1)}))  # 15 KB: pages
    assert response.status_code == 503
    assert (await response.get_json())["error"]["code"] == "ack_timeout"
    assert db.execute("SELECT COUNT(*) FROM answer").fetchone()[0] == 0
    await eventually(lambda: db.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0] == 1)
    assert "full" in db.execute("SELECT error FROM dead_letter").fetchone()[0]
    conn.execute("PRAGMA max_page_count = 1073741823")  # space is back
    replay = await client.post(
        f"/api/v1/admin/plans/{PLAN_ID}/dead-letters/replay", json={}, headers=admin
    )
    assert len((await replay.get_json())["replayed"]) == 1
    await eventually(lambda: db.execute("SELECT COUNT(*) FROM answer").fetchone()[0] == 1)


async def test_the_wal_starts_over_while_saves_keep_coming(
    client: Client,
    admin: dict[str, str],
    sync_redis: Any,
    db: sqlite3.Connection,
    settings: Settings,
) -> None:
    """~9 MB of pages committed in 20 rounds: the WAL file stays near the persister's
    checkpoint size. (With a checkpointer beside the writer it never started over and held
    every page ever written: ~1 GB after 40,000 saves.)"""
    await started(client, admin)
    wal = settings.storage.sqlite_path.with_name(settings.storage.sqlite_path.name + "-wal")
    version = 0
    for _ in range(20):
        for _ in range(50):
            version += 1
            body = save_body({"Q001": (f"{version} " + "x" * 4000, version)}, updated=at(version))
            sync_redis.xadd(STREAM, queue_entry(body))
        await eventually(lambda: sync_redis.xlen(STREAM) == 0)
    assert (
        db.execute("SELECT version FROM answer WHERE quiz_code = 'Q001'").fetchone()[0] == version
    )
    assert wal.stat().st_size < 4 * 1024 * 1024


async def test_a_vanished_group_is_looked_for_again_without_an_empty_read(
    client: Client, admin: dict[str, str], sync_redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """When the claim finds the plan's group gone (Redis lost it), the read after it must not
    ask for no stream at all: redis-py refuses that, and each refusal cost a warning and a
    pause before the next look."""
    await started(client, admin)
    sync_redis.delete(STREAM)
    await asyncio.sleep(2.5)  # the persister looks for its streams again every second
    assert [r.getMessage() for r in caplog.records if r.name.endswith(".persister")] == []
