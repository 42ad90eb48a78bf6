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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, ResponseError

from examsync.messages import AckStatus, AnswerResult, ReceiptPayload, SaveAck

from ..acks import AckHub
from ..clock import iso, utc_now
from ..receipts import ReceiptSigner
from ..store import keys
from ..store.answer_cache import AnswerCache
from ..store.answers import BatchResult, QueuedSave, apply_batch
from ..store.dead_letters import DeadLetters
from ..store.sqlite import Checkpointer, connect_sync

log = logging.getLogger(__name__)

BATCH = 500
Entry = tuple[str, str, dict[str, str]]  # stream, message id, fields
Commit = tuple[BatchResult, str]  # what the batch changed, and its server time


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
    _attempts: dict[str, int] = field(default_factory=dict)
    _streams: list[str] = field(default_factory=list)
    # First read our own pending entries: a restarted persister with the same consumer name
    # (the supervisor's keeps one) takes up at once what it had read but not committed.
    _retry_pending: bool = True
    # The last committed batch's cache update, XACKs and acks, running while the next commits.
    _finishing: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.cache = AnswerCache(self.redis)
        self.conn: sqlite3.Connection = connect_sync(self.sqlite_path)
        # Commits never checkpoint (copying the WAL into the database and syncing it took
        # ~40% of a commit's time); the checkpointer does, beside them, on its own connection.
        self.conn.execute("PRAGMA wal_autocheckpoint=0")
        # One thread owns the write connection: SQLite and fsync run there without the GIL
        # while the event loop reads the next batch and sends the last one's acks.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="persister-sqlite")
        self._checkpointer = Checkpointer(self.sqlite_path)

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._checkpointer.close()
        self.conn.close()

    async def run(self, plans_of_interest: Callable[[], Awaitable[list[str]]]) -> None:
        """Forever: read batches from the live plans' streams and persist them."""
        checkpoints = asyncio.create_task(self._checkpointer.run(), name="checkpointer")
        try:
            await self._run(plans_of_interest)
        finally:
            checkpoints.cancel()
            if self._finishing is not None:
                self._finishing.cancel()

    async def _run(self, plans_of_interest: Callable[[], Awaitable[list[str]]]) -> None:
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
                    next_claim = now + min(5.0, max(0.1, self.claim_idle_ms / 2000))
                    await self.claim_stale()
                if self._retry_pending:
                    await self.settle()  # what is being XACKed now is not to be read again
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
            except Exception:  # a bug must not stop every save's commit: log it, go on
                log.exception("persister failed; retrying in 0.5 s")
                self._retry_pending = True
                await asyncio.sleep(0.5)

    async def read(self, start: str, block_ms: int | None) -> list[Entry]:
        try:
            batches: Any = await self.redis.xreadgroup(
                keys.PERSISTER_GROUP,
                self.consumer,
                {s: start for s in self._streams},
                count=BATCH,
                block=block_ms,
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._streams = []  # a plan's stream vanished (Redis lost it): rediscover
            return []
        return [
            (stream, mid, fields)
            for stream, entries in batches or []
            for mid, fields in entries
            if fields
        ]

    async def claim_stale(self) -> None:
        """Persist what a dead consumer left pending."""
        for stream in self._streams:
            reply: Any = await self.redis.xautoclaim(
                stream, keys.PERSISTER_GROUP, self.consumer, self.claim_idle_ms, "0-0", count=BATCH
            )
            claimed = [(stream, mid, fields) for mid, fields in reply[1] if fields]
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
                await self._done([(stream, mid)])
        if not saves:
            return
        try:
            result, server_time = await self._commit_in_writer(saves)
        except sqlite3.Error as exc:
            await self.settle()
            await self._failed(entries, saves, exc)
            return
        for save in saves:
            self._attempts.pop(save.message_id, None)
        self._finishing = asyncio.create_task(
            self._finish(self._finishing, result, server_time, saves), name="persister-acks"
        )

    async def settle(self) -> None:
        """Wait until the last committed batch is XACKed and acknowledged."""
        if self._finishing is not None:
            await self._finishing

    async def _finish(
        self,
        previous: asyncio.Task[None] | None,
        result: BatchResult,
        server_time: str,
        saves: list[QueuedSave],
    ) -> None:
        # Signing releases the GIL: in a thread it overlaps the next batch's commit.
        acks = await asyncio.to_thread(self._acks, saves, result, server_time)
        if previous is not None:
            await previous  # batches are acknowledged in the order they committed
        try:
            await self._after_commit(result, saves, acks)
        except RedisError as exc:
            # Committed but not XACKed: the entries stay pending and are read again, and the
            # version rules make that a `duplicate` whose ack reaches a client that retried.
            log.warning("acknowledging %d saves failed: %s; they are read again", len(saves), exc)
            self._retry_pending = True

    async def _commit_in_writer(self, saves: list[QueuedSave]) -> Commit:
        return await asyncio.get_running_loop().run_in_executor(self._writer, self._commit, saves)

    def _commit(self, saves: list[QueuedSave]) -> Commit:
        """One transaction for the batch (in the writer thread)."""
        server_time = iso(utc_now())
        return apply_batch(self.conn, saves, server_time), server_time

    def _acks(
        self, saves: list[QueuedSave], result: BatchResult, server_time: str
    ) -> dict[str, dict[str, Any]]:
        """The ack of each save, by request id, with a signed receipt for each answer stored."""
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
        return acks

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
        by_node: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for save in saves:
            by_node[save.node][save.rid] = acks[save.rid]
        done = [(keys.plan_stream(s.plan_id, "answers"), s.message_id) for s in saves]
        # XACK and XDEL, then the acks to other processes, in one round trip and that order;
        # the requests waiting in this process are answered once it is back.
        async with self.redis.pipeline(transaction=False) as pipe:
            self._queue_done(pipe, done)
            self.hub.publish_remote(by_node, pipe)
            await pipe.execute()
        self.hub.resolve_local(by_node)

    async def _done(self, ids: list[tuple[str, str]]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            self._queue_done(pipe, ids)
            await pipe.execute()

    @staticmethod
    def _queue_done(pipe: Pipeline, ids: list[tuple[str, str]]) -> None:
        by_stream: dict[str, list[str]] = defaultdict(list)
        for stream, mid in ids:
            by_stream[stream].append(mid)
        for stream, mids in by_stream.items():
            pipe.xack(stream, keys.PERSISTER_GROUP, *mids)
            pipe.xdel(stream, *mids)

    async def _failed(
        self, entries: list[Entry], saves: list[QueuedSave], exc: sqlite3.Error
    ) -> None:
        """Count an attempt for each entry; one that has failed too often is tried alone and,
        failing again, dead-lettered, so a poison entry cannot block its whole stream."""
        log.warning("persisting %d saves failed: %s", len(saves), exc)
        self._retry_pending = True
        fields_by_id = {mid: (stream, fields) for stream, mid, fields in entries}
        for save in saves:
            attempts = self._attempts.get(save.message_id, 0) + 1
            self._attempts[save.message_id] = attempts
            if attempts < self.max_attempts:
                continue
            try:
                result, server_time = await self._commit_in_writer([save])
            except sqlite3.Error as alone:
                stream, fields = fields_by_id[save.message_id]
                await self.dead_letters.add(stream, save.message_id, fields, str(alone), attempts)
                await self._done([(stream, save.message_id)])
                self._attempts.pop(save.message_id, None)
            else:
                self._attempts.pop(save.message_id, None)
                await self._after_commit(result, [save], self._acks([save], result, server_time))
        await asyncio.sleep(min(2.0, 0.1 * max(self._attempts.values(), default=1)))
