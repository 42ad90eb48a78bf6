"""ExamClient in the browser: the shared loop (``examsync.driver``) over fetch, WebSocket,
IndexedDB and WebCrypto.

What differs from CPython is only what the browser imposes. IndexedDB is asynchronous, so the
local writes that must be durable are coroutines: ``await client.set_answer(...)`` returns once
the answer is in a completed IndexedDB transaction (``record_navigation`` and
``record_behavior`` stay plain methods; their metadata is written with the next transaction).
When IndexedDB cannot open, answers are kept in memory and a ``StorageState`` event says so.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..connection import ConnectionConfig
from ..driver.api import CachedPackage, Session
from ..driver.client import BaseExamClient, ClientEvent
from ..driver.interfaces import DeviceIdStore, SessionStore, Socket
from ..events import StorageState
from ..exceptions import ExamSyncError
from ..messages import Device
from ..receipts import ReceiptVerifier
from ..storage import Storage
from ._js import js
from ._local import DeviceIdStore as IndexedDBDeviceIdStore
from ._local import PackageStore, PlanDatabase, answers_db_name
from ._local import SessionStore as IndexedDBSessionStore
from .locks import TabLock
from .receipts import WebCryptoVerifier, webcrypto_ed25519_available
from .storage import IndexedDBStorage, open_storage
from .transport import FetchTransport, WebSocketTransport

__all__ = ["ClientConfig", "ClientEvent", "ExamClient", "default_device"]


def default_device() -> Device:
    """The browser as ``navigator`` describes it ("unknown" where there is no navigator)."""
    navigator = getattr(js, "navigator", None)
    agent = str(getattr(navigator, "userAgent", "") or "unknown")
    platform = str(getattr(navigator, "platform", "") or "unknown")
    return Device(type="PC", browser=agent[:200], os=platform)


@dataclass(frozen=True, slots=True)
class ClientConfig:
    base_url: str  # the HTTP API, e.g. https://exam.example.org
    plan_id: str
    exam_code: str
    database_prefix: str = "examsync"  # IndexedDB names start with it (see _local.py)
    device: Device = field(default_factory=default_device)
    connection: ConnectionConfig = field(default_factory=ConnectionConfig)
    request_timeout: float = 30.0  # a save with no answer by then is retried
    max_batch: int = 100
    verify_receipts: bool = True  # needs Ed25519 in WebCrypto; False keeps them unverified
    storage_timeout: float = 10.0  # IndexedDB open; after it, answers are kept in memory
    lock_timeout: float | None = 5.0  # wait this long for another tab to let go (None: forever)
    open_timeout: float = 10.0  # socket handshake
    restore_on_start: bool = True


class ExamClient(BaseExamClient):
    """The async client in Pyodide (see docs/sdk.md)."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        indexeddb: Any = None,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``indexeddb`` replaces the page's ``indexedDB`` factory (tests)."""
        super().__init__(
            config,
            FetchTransport(config.base_url, timeout=config.request_timeout),
            rng=rng,
            clock=clock,
            monotonic=monotonic,
        )
        self.config = config
        self._indexeddb = indexeddb
        self._lock: TabLock | None = None
        self._plan_db = PlanDatabase(
            config.database_prefix, config.plan_id, indexeddb, config.storage_timeout
        )

    async def login(
        self,
        *,
        candidate_id: str | None = None,
        auth_code: str | None = None,
        key: str | None = None,
    ) -> Session:
        """See :meth:`BaseExamClient.login`; first checks that receipts can be verified here."""
        if self.config.verify_receipts and not await webcrypto_ed25519_available():
            # Fail now, not at the first ack (which would then never be accepted).
            raise ExamSyncError(
                "verifying receipts needs Ed25519 in WebCrypto, which this browser lacks:"
                " update it, or pass ClientConfig(verify_receipts=False)"
            )
        return await super().login(candidate_id=candidate_id, auth_code=auth_code, key=key)

    async def set_answer(self, quiz_code: str, value: str) -> int:
        """Store the answer and queue it; return its version once it is in IndexedDB.

        Raises StorageError (StorageFullError for quota) if IndexedDB refused the write: the
        answer is still kept in memory and sent to the server, but is not on this device.
        """
        return await self.save_answer(quiz_code, value)

    async def download_package(self) -> CachedPackage:
        """The exam package, verified by SHA-256 and cached in IndexedDB for offline use."""
        self._require_engine()
        return await self._http.fetch_package(self.config.plan_id, PackageStore(self._plan_db))

    # --- the adapter's I/O -----------------------------------------------------------------------

    def _session_store(
        self, candidate_id: str | None, auth_code: str | None, key: str | None
    ) -> SessionStore:
        return IndexedDBSessionStore(
            self._plan_db, self.config.base_url, candidate_id, auth_code, key
        )

    def _device_id_store(self) -> DeviceIdStore:
        return IndexedDBDeviceIdStore(self._plan_db)

    async def _open_storage(self, candidate_id: str) -> tuple[Storage, StorageState]:
        config = self.config
        name = answers_db_name(
            config.database_prefix, config.plan_id, candidate_id, config.exam_code
        )
        # One writer per candidate, whichever store it ends up with (StoreLockedError).
        self._lock = await TabLock.acquire(f"examsync:{name}", timeout=config.lock_timeout)
        try:
            storage, state = await open_storage(
                name, factory=self._indexeddb, timeout=config.storage_timeout
            )
        except BaseException:
            self._lock.release()
            raise
        if isinstance(storage, IndexedDBStorage):
            storage.on_state = self._set_storage_state
        return storage, state

    async def _close_storage(self, storage: Storage) -> None:
        try:
            if isinstance(storage, IndexedDBStorage):
                await storage.close()
        finally:
            if self._lock is not None:
                self._lock.release()

    async def _durable(self) -> None:
        if isinstance(self._storage, IndexedDBStorage):
            await self._storage.flush()

    async def _connect_socket(self, url: str, token: str, last_position: str | None) -> Socket:
        return await WebSocketTransport.connect(
            url, token, last_position=last_position, open_timeout=self.config.open_timeout
        )

    def _new_verifier(self) -> ReceiptVerifier:
        return WebCryptoVerifier()
