"""The answer persister (seed 002 §3.1 steps 3-4): stream → SQLite (group commit) → Redis → ack.

Each process runs one, as a consumer of the `persisters` group on every live plan's answer
stream, so several processes split the work. One batch is one SQLite transaction; only after
its commit does the Redis cache learn the new versions, are the entries XACKed (and deleted),
and are the waiting requests answered, with a signed receipt per answer. A batch that fails is
retried; an entry that keeps failing on its own goes to the dead letters. Entries left pending
by a process that died are claimed (XAUTOCLAIM) after `claim_idle_ms` and persisted then; the
version rules make a second application of the same save a no-op.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from examsync.messages import AckStatus, AnswerResult, ReceiptPayload, SaveAck

from ..acks import AckHub
from ..clock import iso, utc_now
from ..receipts import ReceiptSigner
from ..store import keys
from ..store.answer_cache import AnswerCache
from ..store.answers import BatchResult, QueuedSave, apply_batch
from ..store.dead_letters import DeadLetters
from ..store.sqlite import connect_sync
from ..store.streams import Entry, GroupConsumer, MissingGroup

log = logging.getLogger(__name__)

BATCH = 500


def parse_entry(stream: str, message_id: str, fields: dict[str, str]) -> QueuedSave:
    payload = json.loads(fields["p"])
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


@dataclass
class Persister:
    sqlite_path: Path
    redis: Redis
    signer: ReceiptSigner
    hub: AckHub
    dead_letters: DeadLetters
    consumer: str
    claim_idle_ms: int = 30_000
    max_attempts: int = 5
    cache: AnswerCache = field(init=False)
    group: GroupConsumer = field(init=False)
    _streams: list[str] = field(default_factory=list)
    _retry_pending: bool = False

    def __post_init__(self) -> None:
        self.cache = AnswerCache(self.redis)
        self.group = GroupConsumer(
            self.redis, keys.PERSISTER_GROUP, self.consumer, self.claim_idle_ms
        )
        self.conn: sqlite3.Connection = connect_sync(self.sqlite_path)

    def close(self) -> None:
        self.conn.close()

    async def run(self, plans_of_interest: Callable[[], Awaitable[list[str]]]) -> None:
        """Forever: read batches from the live plans' streams and persist them."""
        next_refresh = next_claim = 0.0
        while True:
            try:
                now = time.monotonic()
                if now >= next_refresh:
                    self._streams = [
                        keys.plan_stream(p, "answers") for p in await plans_of_interest()
                    ]
                    next_refresh = now + 1.0
                if not self._streams:
                    await asyncio.sleep(0.2)
                    continue
                if now >= next_claim:
                    next_claim = now + self.group.claim_every
                    await self.claim_stale()
                if self._retry_pending:
                    # What failed stays pending for us; "0" reads our own pending entries.
                    entries = await self.read("0", block_ms=None)
                    self._retry_pending = bool(entries)
                else:
                    entries = await self.read(">", block_ms=100)
                if entries:
                    await self.persist(entries)
            except asyncio.CancelledError:
                raise
            except (RedisError, sqlite3.Error, OSError) as exc:
                log.warning("persister: %s; retrying in 0.5 s", exc)
                await asyncio.sleep(0.5)

    async def read(self, start: str, block_ms: int | None) -> list[Entry]:
        try:
            return await self.group.read(self._streams, start, block_ms, BATCH)
        except MissingGroup:
            self._streams = []  # a plan's stream vanished (Redis lost it): rediscover
            return []

    async def claim_stale(self) -> None:
        """Persist what a dead consumer left pending."""
        for stream in self._streams:
            try:
                claimed = await self.group.claim_stale(stream, BATCH)
            except MissingGroup:
                self._streams = []
                return
            if claimed:
                log.info("claimed %d stale entries of %s", len(claimed), stream)
                await self.persist(claimed)

    async def persist(self, entries: list[Entry]) -> None:
        saves: list[QueuedSave] = []
        for stream, mid, fields in entries:
            try:
                saves.append(parse_entry(stream, mid, fields))
            except (KeyError, ValueError, TypeError) as exc:
                await self.dead_letters.add(stream, mid, fields, f"unreadable entry: {exc}", 1)
                await self.group.done([(stream, mid)])
        if not saves:
            return
        try:
            result, acks = await asyncio.to_thread(self._commit, saves)
        except sqlite3.Error as exc:
            await self._failed(entries, saves, exc)
            return
        await self._after_commit(result, saves, acks)

    def _commit(self, saves: list[QueuedSave]) -> tuple[BatchResult, dict[str, dict[str, Any]]]:
        """In a worker thread: one transaction for the batch, then the receipts it earned."""
        server_time = iso(utc_now())
        result = apply_batch(self.conn, saves, server_time)
        acks: dict[str, dict[str, Any]] = {}
        for save, outcomes in zip(saves, result.outcomes, strict=True):
            results = {}
            for o in outcomes:
                status = AckStatus(o.status)
                receipt = None
                if status is not AckStatus.SUPERSEDED:
                    receipt = self.signer.sign(
                        ReceiptPayload(
                            save.plan_id,
                            save.candidate_id,
                            save.exam_code,
                            o.quiz_code,
                            o.version,
                            o.value_sha256,
                            server_time,
                        )
                    )
                results[o.quiz_code] = AnswerResult(status, o.version, o.current_version, receipt)
            ack = SaveAck(results, server_time).to_wire()
            if save.late:
                ack["late"] = True
            acks[save.rid] = ack
        return result, acks

    async def _after_commit(
        self, result: BatchResult, saves: list[QueuedSave], acks: dict[str, dict[str, Any]]
    ) -> None:
        try:
            await self.cache.apply(result.sheets)
        except RedisError as exc:
            # The cache may now be behind SQLite: drop those entries so restore reads SQLite.
            log.warning("answer cache update failed (%s); invalidating", exc)
            await self.redis.delete(
                *{keys.answer_cache(s.plan_id, s.exam_code, s.candidate_id) for s in result.sheets}
            )
        await self.group.done(
            [(keys.plan_stream(s.plan_id, "answers"), s.message_id) for s in saves]
        )
        by_node: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for save in saves:
            by_node[save.node][save.rid] = acks[save.rid]
        await self.hub.deliver(by_node)

    async def _failed(
        self, entries: list[Entry], saves: list[QueuedSave], exc: sqlite3.Error
    ) -> None:
        """Count an attempt for each entry; one that has failed too often is tried alone and,
        failing again, dead-lettered, so a poison entry cannot block its whole stream."""
        log.warning("persisting %d saves failed: %s", len(saves), exc)
        self._retry_pending = True
        fields_by_id = {mid: (stream, fields) for stream, mid, fields in entries}
        for save in saves:
            attempts = self.group.failed(save.message_id)
            if attempts < self.max_attempts:
                continue
            try:
                result, acks = await asyncio.to_thread(self._commit, [save])
            except sqlite3.Error as alone:
                stream, fields = fields_by_id[save.message_id]
                await self.dead_letters.add(stream, save.message_id, fields, str(alone), attempts)
                await self.group.done([(stream, save.message_id)])
            else:
                await self._after_commit(result, [save], acks)
        await asyncio.sleep(self.group.retry_delay())
