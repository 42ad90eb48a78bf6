"""The persister (seed 002 §3.1 steps 3-4): plan streams → SQLite (group commit) → Redis → ack.

A consumer of the `persisters` group on every live plan's streams: answers, media and logs,
each with its sink (answers/sink.py, media/sinks.py) that knows how to apply its entries. One
batch, of whatever kinds, is one SQLite transaction (store/persisting.py); only after its
commit does Redis learn what changed (the answer cache, the recent-media window), are the
entries XACKed (and deleted), and are the waiting requests answered. A batch that fails is
retried; an entry that keeps failing on its own goes to the dead letters. Entries left pending
by a process that died are claimed (XAUTOCLAIM) after `claim_idle_ms` and persisted then;
every sink makes a second application of the same entry a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..base.clock import iso, utc_now
from ..base.tasks import cancel_requested
from ..store import keys
from ..store.dead_letters import DeadLetters
from ..store.persisting import BatchConnection, BatchWriter
from ..store.sqlite import DatabaseError
from ..store.streams import Entry, GroupConsumer, MissingGroup
from .acks import AckHub, encode_ack

log = logging.getLogger(__name__)

BATCH = 500
# A batch smaller than this waits `linger_ms` once for more entries before it commits: a batch
# costs about the same CPU whatever its size (round trips, a thread hand-off, an fsync).
LINGER_BELOW = 50


class Sink(Protocol):
    """How one kind of plan stream is persisted."""

    kind: str  # the stream kind: keys.PLAN_STREAM_KINDS

    def parse(self, message_id: str, fields: dict[str, str]) -> Any:
        """The entry as the sink's item; KeyError, ValueError or TypeError if unreadable."""

    def apply(self, conn: BatchConnection, items: list[Any], server_time: str) -> Any:
        """Write the items inside the batch's transaction (in the writer thread)."""

    def acks(self, items: list[Any], applied: Any, server_time: str) -> list[dict[str, Any]]:
        """One ack per item, in order (in a worker thread: it may sign)."""

    async def publish(self, applied: Any) -> None:
        """Tell Redis what the commit changed, before any ack leaves."""


@dataclass(frozen=True, slots=True)
class Queued:
    """An entry read from a plan stream, parsed by its sink."""

    stream: str
    message_id: str
    fields: dict[str, str]
    kind: str
    item: Any

    @property
    def request(self) -> tuple[str, str]:
        """(node, request id): where the ack goes."""
        return self.fields["node"], self.fields["rid"]


@dataclass(frozen=True, slots=True)
class Committed:
    batch: list[Queued]
    applied: dict[str, Any]  # by kind
    server_time: str


@dataclass
class Persister:
    sqlite_path: Path
    redis: Redis
    hub: AckHub
    dead_letters: DeadLetters
    consumer: str
    sinks: Sequence[Sink]
    claim_idle_ms: int = 30_000
    max_attempts: int = 5
    linger_ms: float = 0.0
    group: GroupConsumer = field(init=False)
    _streams: list[str] = field(default_factory=list)
    # First read our own pending entries: a restarted persister with the same consumer name
    # (`serve --processes N` keeps one) takes up at once what it had read but not committed.
    _retry_pending: bool = True
    # The last committed batch's Redis updates, XACKs and acks, running while the next commits.
    _finishing: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self._by_kind = {sink.kind: sink for sink in self.sinks}
        self.group = GroupConsumer(
            self.redis, keys.PERSISTER_GROUP, self.consumer, self.claim_idle_ms
        )
        self.writer = BatchWriter(self.sqlite_path)
        # One thread owns the write connection: SQLite and fsync run there without the GIL
        # while the event loop reads the next batch and sends the last one's acks.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="persister-sqlite")

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self.writer.close()

    async def run(self, plans_of_interest: Callable[[], Awaitable[list[str]]]) -> None:
        """Forever: read batches from the live plans' streams and persist them."""
        try:
            await self._run(plans_of_interest)
        finally:
            if self._finishing is not None:
                self._finishing.cancel()

    async def _run(self, plans_of_interest: Callable[[], Awaitable[list[str]]]) -> None:
        next_refresh = next_claim = 0.0
        while not cancel_requested():
            try:
                now = time.monotonic()
                if now >= next_refresh:
                    self._streams = [
                        keys.plan_stream(plan, kind)
                        for plan in await plans_of_interest()
                        for kind in self._by_kind
                    ]
                    next_refresh = now + 1.0
                if not self._streams:
                    await asyncio.sleep(0.2)
                    continue
                if now >= next_claim:
                    next_claim = now + self.group.claim_every
                    await self.claim_stale()
                    if not self._streams:  # it found a group gone: no read of no stream
                        continue
                if self._retry_pending:
                    await self.settle()  # what is being XACKed now is not to be read again
                    # What failed stays pending for us; "0" reads our own pending entries.
                    entries = await self.read("0", block_ms=None)
                    self._retry_pending = bool(entries)
                else:
                    entries = await self.read(">", block_ms=100)
                    if 0 < len(entries) < LINGER_BELOW and self.linger_ms > 0:
                        await asyncio.sleep(self.linger_ms / 1000)
                        entries += await self.read(">", block_ms=None)
                if entries:
                    await self.persist(entries)
            except asyncio.CancelledError:
                raise
            except (RedisError, DatabaseError, OSError) as exc:
                log.warning("persister: %s; retrying in 0.5 s", exc)
                # A read whose reply the dropped connection lost left its entries pending for
                # us, and `>` never returns them: without this they waited for the claim
                # (`claim_idle_ms`), their requests for the whole ack timeout.
                self._retry_pending = True
                await asyncio.sleep(0.5)
            except Exception:  # a bug must not stop every save's commit: log it, go on
                log.exception("persister failed; retrying in 0.5 s")
                self._retry_pending = True
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
        batch: list[Queued] = []
        for stream, mid, fields in entries:
            kind = stream.rsplit(":", 1)[-1]
            try:
                if not {"node", "rid"} <= fields.keys():
                    raise KeyError("the entry names no request (node, rid)")
                item = self._by_kind[kind].parse(mid, fields)
                batch.append(Queued(stream, mid, fields, kind, item))
            except (KeyError, ValueError, TypeError) as exc:
                await self.dead_letters.add(stream, mid, fields, f"unreadable entry: {exc!r}", 1)
                await self.group.done([(stream, mid)])
        if not batch:
            return
        try:
            committed = await self._commit_in_writer(batch)
        except Exception as exc:  # whatever stops a batch must not stop its stream
            # Not only a DatabaseError: a value SQLite cannot bind (OverflowError), or a bug, would
            # otherwise fail the same batch forever; counted, such an entry is dead-lettered.
            await self.settle()
            await self._failed(batch, exc)
            return
        for queued in batch:
            self.group.forget(queued.message_id)
        self._finishing = asyncio.create_task(
            self._finish(self._finishing, committed), name="persister-acks"
        )

    async def settle(self) -> None:
        """Wait until the last committed batch is XACKed and acknowledged."""
        if self._finishing is not None:
            await self._finishing

    async def _finish(self, previous: asyncio.Task[None] | None, committed: Committed) -> None:
        """Never raises: the next batch's _finish and settle() await this one. What fails
        leaves its entries pending, to be read again: their acks then say `duplicate`."""
        try:
            # Signing releases the GIL: in a thread it overlaps the next batch's commit.
            acks: dict[tuple[str, str], dict[str, Any]] | None = await asyncio.to_thread(
                self._acks, committed
            )
        except Exception:  # a bug; it must not fail every later batch's acks
            log.exception("making the acks of %d entries failed", len(committed.batch))
            acks = None
        if previous is not None:
            await previous  # batches are acknowledged in the order they committed
        if acks is None:
            self._retry_pending = True
            return
        by_node = _by_node(acks)
        try:
            await self._after_commit(committed, by_node)
        except RedisError as exc:
            # Committed, perhaps not XACKed: such entries stay pending and are read again, and
            # the sinks make that a `duplicate`. But the round trip may have gone through and
            # only its reply been lost (Redis stopping): nothing reads those entries again.
            log.warning("acknowledging %d entries failed: %s", len(committed.batch), exc)
            self._retry_pending = True
            await self._answer_anyway(by_node)
        except Exception:  # a bug: the same
            log.exception("acknowledging %d entries failed", len(committed.batch))
            self._retry_pending = True

    async def _commit_in_writer(self, batch: list[Queued]) -> Committed:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._commit, batch)

    def _commit(self, batch: list[Queued]) -> Committed:
        """One transaction for the whole batch, every kind in it (in the writer thread)."""
        server_time = iso(utc_now())
        applied: dict[str, Any] = {}
        with self.writer.transaction() as conn:
            for kind, queued in _by_kind(batch).items():
                items = [q.item for q in queued]
                applied[kind] = self._by_kind[kind].apply(conn, items, server_time)
        return Committed(batch, applied, server_time)

    def _acks(self, committed: Committed) -> dict[tuple[str, str], dict[str, Any]]:
        """Each entry's ack by (node, request id)."""
        acks = {}
        for kind, queued in _by_kind(committed.batch).items():
            items = [q.item for q in queued]
            made = self._by_kind[kind].acks(items, committed.applied[kind], committed.server_time)
            acks.update({q.request: ack for q, ack in zip(queued, made, strict=True)})
        return acks

    async def _answer_anyway(self, by_node: dict[str, dict[str, bytes]]) -> None:
        """The batch is committed, so its acks are true even though the round trip that sends
        them failed: answer this process's requests, and keep the others' acks in their ack
        records (their listeners read them on their return), retrying while Redis is away, up
        to the ack timeout, after which nobody waits any more."""
        self.hub.resolve_local(by_node)
        until = time.monotonic() + self.hub.timeout
        while True:
            try:
                await self.hub.record_remote(by_node)
                return
            except RedisError as exc:
                if time.monotonic() >= until:
                    log.warning("recording acks of a failed round trip: %s; given up", exc)
                    return
                await asyncio.sleep(0.2)

    async def _after_commit(
        self, committed: Committed, by_node: dict[str, dict[str, bytes]]
    ) -> None:
        for kind, applied in committed.applied.items():
            await self._by_kind[kind].publish(applied)
        # XACK and XDEL, then the acks to other processes, in one round trip and that order;
        # the requests waiting in this process are answered once it is back.
        async with self.redis.pipeline(transaction=False) as pipe:
            self.group.queue_done(pipe, [(q.stream, q.message_id) for q in committed.batch])
            published = self.hub.publish_remote(by_node, pipe)
            replies = await pipe.execute()
        self.hub.resolve_local(by_node)
        if published:  # a message no listener heard is kept for its listener's return
            await self.hub.record_unheard(published, replies[-len(published) :])

    async def _failed(self, batch: list[Queued], exc: Exception) -> None:
        """Count an attempt for each entry; one that has failed too often is tried alone and,
        failing again, dead-lettered, so a poison entry cannot block its whole stream."""
        log.warning("persisting %d entries failed: %s", len(batch), exc)
        self._retry_pending = True
        for queued in batch:
            attempts = self.group.failed(queued.message_id)
            if attempts < self.max_attempts:
                continue
            try:
                committed = await self._commit_in_writer([queued])
            except Exception as alone:  # as in persist()
                await self.dead_letters.add(
                    queued.stream, queued.message_id, queued.fields, str(alone), attempts
                )
                await self.group.done([(queued.stream, queued.message_id)])
            else:
                self.group.forget(queued.message_id)
                await self._after_commit(committed, _by_node(self._acks(committed)))
        await asyncio.sleep(self.group.retry_delay())


def _by_node(acks: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, bytes]]:
    """The acks by receiving process, each encoded once: sent on as it is (acks.py)."""
    by_node: dict[str, dict[str, bytes]] = defaultdict(dict)
    for (node, rid), ack in acks.items():
        by_node[node][rid] = encode_ack(ack)
    return by_node


def _by_kind(batch: list[Queued]) -> dict[str, list[Queued]]:
    groups: dict[str, list[Queued]] = defaultdict(list)
    for queued in batch:
        groups[queued.kind].append(queued)
    return groups
