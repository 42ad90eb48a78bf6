"""Where the browser client keeps things, and the session and package caches.

IndexedDB databases (``prefix`` is ``ClientConfig.database_prefix``):

    <prefix>/<plan>/<candidate>/<exam code>   answers, outbox, receipts, version_floors, meta
    <prefix>/<plan>                           sessions (last session per login, and this
                                              device's id under "deviceId"), packages

The plan database is opened on demand and closed after each use. When IndexedDB cannot open,
the caches are empty and stay so: an offline reload then cannot log in, which the answer
store's memory fall-back has already reported.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import quote

from ..driver.api import CachedPackage, Session
from ..exceptions import RemoteProtocolError, StorageError
from .idb import Database, StoreOps

__all__ = ["DeviceIdStore", "PackageStore", "PlanDatabase", "SessionStore", "answers_db_name"]

_PLAN_STORES = ("sessions", "packages")


def _part(name: str) -> str:
    return quote(name, safe="")  # ids never contain "/" in practice; never trust that


def answers_db_name(prefix: str, plan_id: str, candidate_id: str, exam_code: str) -> str:
    return f"{prefix}/{_part(plan_id)}/{_part(candidate_id)}/{_part(exam_code)}"


class PlanDatabase:
    """Opens ``<prefix>/<plan>`` for one operation at a time; None-safe when it cannot."""

    def __init__(self, prefix: str, plan_id: str, factory: Any, timeout: float) -> None:
        self.name = f"{prefix}/{_part(plan_id)}"
        self._factory, self._timeout = factory, timeout

    async def open(self) -> Database | None:
        try:
            return await Database.open(
                self.name, _PLAN_STORES, factory=self._factory, timeout=self._timeout
            )
        except StorageError:
            return None

    async def get(self, store: str, key: str) -> object:
        """The value at ``key`` (None: absent, or the database cannot be read)."""
        db = await self.open()
        if db is None:
            return None
        try:
            return await db.get(store, key)
        except StorageError:
            return None
        finally:
            db.close()

    async def put(self, store: str, key: str, value: object) -> None:
        """Keep ``value`` at ``key`` if the database can be written (these are caches)."""
        db = await self.open()
        if db is None:
            return
        try:
            await db.write({store: StoreOps(put={key: value})})
        except StorageError:
            pass  # a cache: the next online login writes it again
        finally:
            db.close()


class DeviceIdStore:
    """This device's id for the plan, read before a sign-in (a key login does not know the
    candidate, so their database, yet). Kept in the ``sessions`` store, whose other keys are
    hashes."""

    _KEY = "deviceId"

    def __init__(self, plan_db: PlanDatabase) -> None:
        self._plan_db = plan_db

    async def load(self) -> str | None:
        found = await self._plan_db.get("sessions", self._KEY)
        return found if isinstance(found, str) else None

    async def save(self, device_id: str) -> None:
        await self._plan_db.put("sessions", self._KEY, device_id)


class SessionStore:
    """The last session of one login (same server, plan and credentials), for offline starts.

    Keyed by a hash of the credentials, so they are not stored in the clear; the session's
    bearer token is, as any web app's is (same-origin storage).
    """

    def __init__(self, plan_db: PlanDatabase, base_url: str, *credentials: str | None) -> None:
        identity = json.dumps([base_url, plan_db.name, *credentials])
        self._key = hashlib.sha256(identity.encode()).hexdigest()[:32]
        self._plan_db = plan_db

    async def save(self, session: Session) -> None:
        await self._plan_db.put("sessions", self._key, dict(session.raw))

    async def load(self) -> Session | None:
        raw = await self._plan_db.get("sessions", self._key)
        try:
            return None if raw is None else Session.from_wire(raw)
        except RemoteProtocolError:
            return None


class PackageStore:
    """The last verified exam package of the plan (its bytes and SHA-256)."""

    def __init__(self, plan_db: PlanDatabase) -> None:
        self._plan_db = plan_db

    async def load(self) -> CachedPackage | None:
        db = await self._plan_db.open()
        if db is None:
            return None
        try:
            data = await db.get_bytes("packages", "package.zip")
            recorded = await db.get("packages", "package.sha256")
        except StorageError:
            return None
        finally:
            db.close()
        if data is None or hashlib.sha256(data).hexdigest() != recorded:
            return None
        return CachedPackage(data, str(recorded), from_cache=True)

    async def save(self, package: CachedPackage) -> None:
        db = await self._plan_db.open()
        if db is None:
            return
        try:  # both in one transaction: never a digest without its bytes
            await db.write(
                {"packages": StoreOps(put={"package.sha256": package.sha256})},
                [("packages", "package.zip", package.data)],
            )
        except StorageError:
            pass  # not cached: the next start downloads it again
        finally:
            db.close()
