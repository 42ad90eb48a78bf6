"""Revoked sessions, refused on every request and socket by a lookup in memory.

A revocation is durable in SQLite (store/revocations.py), written by the action that revokes in
its own transaction. Every process holds the table in memory (`Revoked`), so the check costs a
few dict lookups and no I/O per save: loaded at start, applied at once in the process that
revoked, announced to the others over Redis pub/sub, and reloaded from SQLite every
`revocation_reload_seconds`, so a lost message (Redis restarting, a listener resubscribing)
keeps a revoked session working at most that long (docs/server.md, "Revoking sessions").
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..errors import ApiError
from ..store import keys
from ..store import revocations as store
from ..store.revocations import EVERYONE, Revocation
from ..store.sqlite import Database, DatabaseError
from .principal import Principal

log = logging.getLogger(__name__)


def session_revoked() -> ApiError:
    return ApiError(
        401,
        "session_revoked",
        "this session was revoked; sign in again (a person removed from the plan cannot)",
    )


@dataclass
class Revoked:
    """(plan, role, subject) → sessions signed before this (epoch seconds) are refused; role
    and subject "" stand for all of them."""

    _before: dict[tuple[str, str, str], float] = field(default_factory=dict)
    # Told when a session may have become revoked (the socket server closes its sockets).
    _listeners: list[Callable[[], None]] = field(default_factory=list)

    def revoked(self, who: Principal) -> bool:
        before = self._before
        if not before:
            return False
        for key in (
            (who.plan_id, who.role, who.subject_id),
            (who.plan_id, who.role, EVERYONE),
            (who.plan_id, EVERYONE, EVERYONE),
        ):
            cutoff = before.get(key)
            if cutoff is not None and who.issued_at < cutoff:
                return True
        return False

    def check(self, who: Principal) -> None:
        if self.revoked(who):
            raise session_revoked()

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def apply(self, revocations: Iterable[Revocation]) -> None:
        """Add revocations (a later time widens one; an earlier one changes nothing)."""
        widened = False
        for r in revocations:
            if r.revoked_before > self._before.get(r.key, float("-inf")):
                self._before[r.key] = r.revoked_before
                widened = True
        if widened:
            self._changed()

    def load(self, revocations: Iterable[Revocation], alive_after: float) -> None:
        """Merge what SQLite holds. Nothing narrows: a read that began before a revocation was
        applied here must not drop it. Records that refuse only sessions signed before
        `alive_after` (all expired) go."""
        self._before = {k: t for k, t in self._before.items() if t > alive_after}
        self.apply(revocations)

    def __len__(self) -> int:
        return len(self._before)

    def _changed(self) -> None:
        for listener in self._listeners:
            try:
                listener()
            except Exception:  # one failing listener must not keep the others uninformed
                log.exception("revocation listener failed")


def encode(revocations: Iterable[Revocation]) -> str:
    return json.dumps([[r.plan_id, r.role, r.subject_id, r.revoked_before] for r in revocations])


def decode(data: str | bytes) -> list[Revocation]:
    """A pub/sub message's revocations; ValueError when it is not one."""
    found = json.loads(data)
    if not isinstance(found, list):
        raise ValueError("not a list")
    out = []
    for item in found:
        match item:
            case [str(plan), str(role), str(subject), float() | int() as before] if not isinstance(
                before, bool
            ):
                out.append(Revocation(plan, role, subject, float(before)))
            case _:
                raise ValueError(f"not a revocation: {item!r}")
    return out


@dataclass
class RevocationSync:
    """Keeps a process's `Revoked` in line with SQLite and the other processes."""

    revoked: Revoked
    db: Database
    redis: Redis
    session_ttl_seconds: float
    reload_seconds: float

    async def load(self) -> None:
        alive_after = time.time() - self.session_ttl_seconds
        self.revoked.load(await store.since(self.db, alive_after), alive_after)

    async def announce(self, revocations: list[Revocation]) -> None:
        """After the commit: refuse here at once, and tell the other processes. A failed
        publish is left to their reload."""
        if not revocations:
            return
        self.revoked.apply(revocations)
        try:
            await self.redis.publish(keys.REVOCATIONS_CHANNEL, encode(revocations))
        except RedisError as exc:
            log.warning("revocation not announced (the others reload it): %s", exc)

    async def listen(self, ready: asyncio.Event | None = None) -> None:
        """Apply the revocations other processes announce; after a resubscription, reload
        what may have been announced meanwhile."""
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(keys.REVOCATIONS_CHANNEL)
                    if ready is not None:
                        ready.set()
                    else:
                        await self._reload()
                    ready = None
                    async for message in pubsub.listen():
                        try:
                            self.revoked.apply(decode(message["data"]))
                        except ValueError as exc:
                            log.warning("revocation message skipped: %s", exc)
            except asyncio.CancelledError:
                raise
            except RedisError as exc:
                log.warning("revocation listener: %s; resubscribing in 1 s", exc)
                await asyncio.sleep(1)

    async def reload_every(self) -> None:
        """The bound on a lost message: SQLite read again every `reload_seconds`."""
        while True:
            await asyncio.sleep(self.reload_seconds)
            await self._reload()

    async def _reload(self) -> None:
        try:
            await self.load()
        except DatabaseError as exc:  # the database busy a moment: the next reload
            log.warning("revocations not reloaded: %s", exc)
