"""The state manager (seed 004 §10.2): status_queue → Redis state → socket_queue.

Each process runs one, as a consumer of the `state_managers` group on `status_queue`, so each
`connection_status` message is handled once across processes. A message is applied to the
seed 004 §10.5 keys, and an examinee whose state changed is announced to the supervisors of
their group (`examinee_connected` / `examinee_disconnected` on `socket_queue`, which fan-out
delivers to supervisors only: `audience=supervisors`); presence/connections.py holds the rules
that make late and repeated messages harmless. Messages a dead consumer left pending are
claimed after `claim_idle_ms`. A message that keeps failing is retried `max_attempts` times,
then dead-lettered with an admin alert; one that cannot be read is dead-lettered at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from ..base.tasks import cancel_requested
from ..store import keys
from ..store.candidates import Candidates
from ..store.dead_letters import DeadLetters
from ..store.sqlite import DatabaseError
from ..store.streams import Entry, GroupConsumer, MissingGroup, ensure_group
from .connections import ConnectionState
from .status import ConnectionStatus, InvalidStatus

log = logging.getLogger(__name__)

BATCH = 200
STREAM = keys.STATUS_STREAM


@dataclass
class StateManager:
    redis: Redis
    candidates: Candidates
    dead_letters: DeadLetters
    consumer: str
    claim_idle_ms: int = 30_000
    max_attempts: int = 5
    state: ConnectionState = field(init=False)
    group: GroupConsumer = field(init=False)

    def __post_init__(self) -> None:
        self.state = ConnectionState(self.redis)
        self.group = GroupConsumer(
            self.redis, keys.STATE_MANAGER_GROUP, self.consumer, self.claim_idle_ms
        )

    async def run(self, ready: asyncio.Event | None = None) -> None:
        have_group = retry_pending = False
        next_claim = 0.0
        while not cancel_requested():
            try:
                if not have_group:
                    await ensure_group(self.redis, STREAM, keys.STATE_MANAGER_GROUP)
                    have_group = True
                    if ready is not None:
                        ready.set()
                if time.monotonic() >= next_claim:
                    next_claim = time.monotonic() + self.group.claim_every
                    claimed = await self.group.claim_stale(STREAM, BATCH)
                    if claimed:
                        log.info("claimed %d stale connection statuses", len(claimed))
                        retry_pending |= await self.handle(claimed)
                if retry_pending:
                    # What failed stays pending for us; "0" reads our own pending entries.
                    entries = await self.group.read([STREAM], "0", None, BATCH)
                    retry_pending = False
                else:
                    entries = await self.group.read([STREAM], ">", 100, BATCH)
                if entries and await self.handle(entries):
                    retry_pending = True
                    await asyncio.sleep(self.group.retry_delay())
            except asyncio.CancelledError:
                raise
            except MissingGroup:
                have_group = False  # Redis lost the stream: make it again
            except (RedisError, DatabaseError, OSError) as exc:
                log.warning("state manager: %s; retrying in 0.5 s", exc)
                retry_pending = True
                await asyncio.sleep(0.5)

    async def handle(self, entries: list[Entry]) -> bool:
        """Apply a batch; True when some entries failed and stay pending for a retry."""
        statuses: list[tuple[Entry, ConnectionStatus]] = []
        for entry in entries:
            stream, mid, fields = entry
            try:
                statuses.append((entry, ConnectionStatus.from_fields(fields)))
            except InvalidStatus as exc:
                await self.dead_letters.add(stream, mid, fields, f"unreadable entry: {exc}", 1)
                await self.group.done([(stream, mid)])
        if not statuses:
            return False
        try:
            # the examinees' groups, whose supervisors hear of them
            groups = await self.candidates.groups({s.examinee_id for _, s in statuses})
        except DatabaseError as exc:
            return await self._failed([(entry, str(exc)) for entry, _ in statuses])
        handled: list[tuple[str, str]] = []
        failed: list[tuple[Entry, str]] = []
        for entry, status in statuses:
            try:
                await self.state.apply(status, groups.get((status.plan_id, status.examinee_id)))
            except ResponseError as exc:  # Redis refused this one (say, a key of another type)
                log.warning("connection status %s not applied: %s", entry[1], exc)
                failed.append((entry, str(exc)))
            else:
                handled.append((entry[0], entry[1]))
        await self.group.done(handled)
        return await self._failed(failed)

    async def _failed(self, failures: list[tuple[Entry, str]]) -> bool:
        """Count an attempt for each; dead-letter those that have had their last."""
        retry = False
        for (stream, mid, fields), error in failures:
            attempts = self.group.failed(mid)
            if attempts < self.max_attempts:
                retry = True
                continue
            await self.dead_letters.add(stream, mid, fields, error, attempts)
            await self.group.done([(stream, mid)])
        return retry
