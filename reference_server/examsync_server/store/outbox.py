"""The transactional outbox: write an event with the change it announces, publish after commit."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping

import aiosqlite
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .sqlite import Database

log = logging.getLogger(__name__)

# Broadcast streams are trimmed: they carry live events, SQLite keeps the record.
STREAM_MAXLEN = 100_000


async def add(conn: aiosqlite.Connection, stream: str, fields: Mapping[str, str], at: str) -> None:
    """Queue an event inside the caller's transaction."""
    await conn.execute(
        "INSERT INTO event_outbox (stream, fields, created_at) VALUES (?, ?, ?)",
        (stream, json.dumps(dict(fields), ensure_ascii=False), at),
    )


CLAIM_SECONDS = 60.0


async def relay(db: Database, redis: Redis, limit: int = 500) -> int:
    """Publish pending events in order, deleting each once Redis has it; returns how many.

    The events are first claimed in a short transaction, so two server processes never
    publish the same event, and no SQLite lock is held while Redis is written to (under load,
    that would stall every writer behind one slow round trip). On a Redis error the rest stay
    queued; a claim left by a process that died is taken over after CLAIM_SECONDS.
    """
    waiting = await db.fetch_one("SELECT 1 FROM event_outbox LIMIT 1")
    if waiting is None:
        return 0
    me, now = f"{os.getpid()}-{id(db):x}", time.time()
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE event_outbox SET claimed_by = ?, claimed_at = ? WHERE event_id IN"
            " (SELECT event_id FROM event_outbox WHERE claimed_by IS NULL OR claimed_at < ?"
            " ORDER BY event_id LIMIT ?)",
            (me, now, now - CLAIM_SECONDS, limit),
        )
        async with conn.execute(
            "SELECT event_id, stream, fields FROM event_outbox WHERE claimed_by = ?"
            " ORDER BY event_id",
            (me,),
        ) as cursor:
            claimed = list(await cursor.fetchall())
    published: list[int] = []
    for event_id, stream, fields in claimed:
        try:
            await redis.xadd(stream, json.loads(fields), maxlen=STREAM_MAXLEN, approximate=True)
        except RedisError as exc:
            log.warning("outbox relay stopped at event %s: %s", event_id, exc)
            break
        published.append(event_id)
    async with db.transaction() as conn:
        await conn.executemany(
            "DELETE FROM event_outbox WHERE event_id = ?", [(e,) for e in published]
        )
        # What could not be published is released for the next relay, here or elsewhere.
        await conn.execute("UPDATE event_outbox SET claimed_by = NULL WHERE claimed_by = ?", (me,))
    return len(published)


async def pending_count(db: Database) -> int:
    row = await db.fetch_one("SELECT COUNT(*) FROM event_outbox")
    return int(row[0]) if row else 0
