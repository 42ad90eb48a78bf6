"""Dead letters (seed 002 §5.1 재처리 큐 · 관리자 알림 · 수동 처리).

A queue entry that cannot be persisted after its attempts is recorded in SQLite with the error,
copied to the plan's dead-letter stream, and announced: to admins on `queue:alerts`, and to
the supervisors of the candidate's group through the socket server. Admins list and replay
them; a replay puts the original entry back on its stream.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from examsync.frames import dead_letter_alert_message

from ..base.clock import iso, utc_now
from . import keys
from .errors import DeadLetterNotFound
from .sqlite import Database

log = logging.getLogger(__name__)

ALERT_STREAM = "queue:alerts"


def dead_stream(plan_id: str) -> str:
    return f"exam_queue:{plan_id}:dead"


def owner(stream: str, fields: dict[str, str]) -> tuple[str, str]:
    """(plan, candidate) an entry concerns: a plan stream's entries say `plan`/`cand`, the
    cross-plan streams' (status_queue) `planId`/`candidateId`."""
    plan_id = fields.get("plan") or fields.get("planId") or ""
    if not plan_id and stream.startswith("exam_queue:"):
        plan_id = stream.split(":")[1]
    return plan_id, fields.get("cand") or fields.get("candidateId") or ""


@dataclass
class DeadLetters:
    db: Database
    redis: Redis

    async def add(
        self, stream: str, message_id: str, fields: dict[str, str], error: str, attempts: int
    ) -> None:
        plan_id, candidate_id = owner(stream, fields)
        now = iso(utc_now())
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT OR IGNORE INTO dead_letter (plan_id, stream, message_id, fields, error,"
                " attempts, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    plan_id,
                    stream,
                    message_id,
                    json.dumps(fields, ensure_ascii=False),
                    error[:2000],
                    attempts,
                    now,
                ),
            )
        log.error("dead letter %s %s: %s", stream, message_id, error)
        alert = {
            "type": "dead_letter",
            "planId": plan_id,
            "candidateId": candidate_id,
            "stream": stream,
            "messageId": message_id,
            "error": error[:500],
            "timestamp": now,
        }
        group = await self.db.fetch_one(
            "SELECT group_id FROM exam_candidate WHERE candidate_id = ?", (candidate_id,)
        )
        try:
            entry: dict[Any, Any] = {**fields, "error": error[:500]}
            await self.redis.xadd(dead_stream(plan_id), entry)
            await self.redis.xadd(
                ALERT_STREAM, {k: str(v) for k, v in alert.items()}, maxlen=10_000, approximate=True
            )
            await self.redis.xadd(
                keys.SOCKET_STREAM,
                {
                    "type": "alert",
                    "planId": plan_id,
                    "candidateId": candidate_id,
                    "groupId": (group["group_id"] or "") if group else "",
                    "audience": "supervisors",
                    "data": json.dumps(
                        dead_letter_alert_message(
                            plan_id, candidate_id, stream, message_id, error[:500], now
                        ),
                        ensure_ascii=False,
                    ),
                },
                maxlen=keys.STREAM_MAXLEN,
                approximate=True,
            )
        except RedisError as exc:  # SQLite has it; the alert is best effort
            log.warning("dead-letter alert not published: %s", exc)

    async def listing(self, plan_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetch_all(
            "SELECT dead_letter_id, stream, message_id, fields, error, attempts, created_at,"
            " replayed_at FROM dead_letter WHERE plan_id = ? ORDER BY dead_letter_id",
            (plan_id,),
        )
        return [
            {
                "id": r["dead_letter_id"],
                "stream": r["stream"],
                "messageId": r["message_id"],
                "candidateId": owner(r["stream"], json.loads(r["fields"]))[1] or None,
                "error": r["error"],
                "attempts": r["attempts"],
                "createdAt": r["created_at"],
                "replayedAt": r["replayed_at"],
            }
            for r in rows
        ]

    async def replay(self, plan_id: str, ids: list[int] | None) -> list[int]:
        """Put dead letters back on their streams (all unreplayed ones when ids is None);
        DeadLetterNotFound, and nothing replayed, if some of the ids are not among them."""
        rows = await self.db.fetch_all(
            "SELECT dead_letter_id, stream, fields FROM dead_letter WHERE plan_id = ?"
            " AND replayed_at IS NULL ORDER BY dead_letter_id",
            (plan_id,),
        )
        chosen = [r for r in rows if ids is None or r["dead_letter_id"] in ids]
        if ids is not None and len(chosen) != len(set(ids)):
            raise DeadLetterNotFound(
                plan_id, sorted(set(ids) - {r["dead_letter_id"] for r in chosen})
            )
        replayed = []
        for row in chosen:
            await self.redis.xadd(row["stream"], json.loads(row["fields"]))
            async with self.db.transaction() as conn:
                await conn.execute(
                    "UPDATE dead_letter SET replayed_at = ? WHERE dead_letter_id = ?",
                    (iso(utc_now()), row["dead_letter_id"]),
                )
            replayed.append(int(row["dead_letter_id"]))
        return replayed
