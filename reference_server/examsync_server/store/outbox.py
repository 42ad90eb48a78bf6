"""The transactional outbox: write an event with the change it announces, publish after commit."""

from __future__ import annotations

import json
import logging
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


async def relay(db: Database, redis: Redis, limit: int = 500) -> int:
    """Publish pending events in order, deleting each once Redis has it; returns how many.

    Runs inside a write transaction so that two server processes never publish the same event.
    On a Redis error the rest stay queued for the next relay.
    """
    published = 0
    async with db.transaction() as conn:
        async with conn.execute(
            "SELECT event_id, stream, fields FROM event_outbox ORDER BY event_id LIMIT ?",
            (limit,),
        ) as cursor:
            pending = list(await cursor.fetchall())
        for event_id, stream, fields in pending:
            try:
                await redis.xadd(stream, json.loads(fields), maxlen=STREAM_MAXLEN, approximate=True)
            except RedisError as exc:
                log.warning("outbox relay stopped at event %s: %s", event_id, exc)
                break
            await conn.execute("DELETE FROM event_outbox WHERE event_id = ?", (event_id,))
            published += 1
    return published


async def pending_count(db: Database) -> int:
    row = await db.fetch_one("SELECT COUNT(*) FROM event_outbox")
    return int(row[0]) if row else 0
