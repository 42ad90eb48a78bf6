"""What the persister does with the answer stream (seed 002 §3.1 steps 3-4).

Saves are applied under the rule "the latest edit wins" (store/answers.py) inside the batch's
transaction; every answer's ack carries a signed receipt for what the server keeps (and, when
superseded, the kept value); after the commit the Redis answer cache learns the kept edits
(newest version wins), before any ack leaves, so a restore right after an ack sees it.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from examsync.messages import AnswerResult, ReceiptPayload, SaveAck

from ..base import fast_json
from ..store import keys
from ..store.answer_cache import AnswerCache
from ..store.answers import BatchResult, QueuedSave, apply_saves, wire_time
from ..store.persisting import BatchConnection
from .signing import ReceiptSigner

log = logging.getLogger(__name__)


def parse_entry(message_id: str, fields: dict[str, str]) -> QueuedSave:
    payload = fast_json.loads(fields["p"])  # validated before it was queued
    if not isinstance(payload, dict) or not isinstance(payload.get("answers"), dict):
        raise ValueError("payload is not a save")
    return QueuedSave(
        message_id=message_id,
        rid=fields["rid"],
        node=fields["node"],
        plan_id=fields["plan"],
        candidate_id=fields["cand"],
        exam_code=fields["exam"],
        received_at=fields["at"],
        late=fields.get("late") == "1",
        payload=payload,
    )


class AnswerSink:
    kind = "answers"

    def __init__(self, redis: Redis, signer: ReceiptSigner) -> None:
        self.redis = redis
        self.signer = signer
        self.cache = AnswerCache(redis)

    def parse(self, message_id: str, fields: dict[str, str]) -> QueuedSave:
        return parse_entry(message_id, fields)

    def apply(
        self, conn: BatchConnection, saves: list[QueuedSave], server_time: str
    ) -> BatchResult:
        return apply_saves(conn, saves, server_time)

    def acks(
        self, saves: list[QueuedSave], result: BatchResult, server_time: str
    ) -> list[dict[str, Any]]:
        """Each save's ack, with a signed receipt per answer for what the server keeps: its
        version and value digest (the sent value unless superseded). The whole batch is signed
        once (ReceiptSigner.sign_many)."""
        payloads = [
            ReceiptPayload(
                save.plan_id,
                save.candidate_id,
                save.exam_code,
                o.quiz_code,
                o.kept.version,
                o.kept.value_sha256,
                server_time,
            )
            for save, outcomes in zip(saves, result.outcomes, strict=True)
            for o in outcomes
        ]
        receipts = iter(self.signer.sign_many(payloads))
        acks = []
        for save, outcomes in zip(saves, result.outcomes, strict=True):
            results = {}
            for o in outcomes:
                results[o.quiz_code] = AnswerResult(
                    o.status,
                    o.version,
                    o.kept.version,
                    next(receipts),
                    o.current_value,
                    None if o.current_value is None else wire_time(o.kept.edited_at),
                )
            ack = SaveAck(results, server_time).to_wire()
            if save.late:
                ack["late"] = True
            acks.append(ack)
        return acks

    async def publish(self, result: BatchResult) -> None:
        try:
            await self.cache.apply(result.sheets)
        except RedisError as exc:
            # The cache may now be behind SQLite: drop those entries so restore reads SQLite.
            log.warning("answer cache update failed (%s); invalidating", exc)
            await self.redis.delete(
                *{keys.answer_cache(s.plan_id, s.exam_code, s.candidate_id) for s in result.sheets}
            )
