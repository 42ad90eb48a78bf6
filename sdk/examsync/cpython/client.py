"""ExamClient on CPython: the shared loop (``examsync.driver``) over httpx, websockets, sqlite3.

Local writes (``set_answer``...) are plain methods: they return once SQLite has the change on
disk. Everything else, the loop included, is :class:`~examsync.driver.client.BaseExamClient`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import httpx

from ..driver.client import BaseExamClient, ClientEvent
from ..driver.interfaces import DeviceIdStore, SessionStore, Socket
from ..events import StorageState
from ..exceptions import ExamSyncError
from ..receipts import ReceiptVerifier
from ..storage import Storage
from ._local import DeviceIdFile, SessionCache, package_dir, store_path
from .config import ClientConfig, default_device
from .receipts import Ed25519Verifier, cryptography_available
from .storage import SQLiteStorage
from .transport import HttpTransport, Package, SocketTransport

__all__ = ["ClientConfig", "ClientEvent", "ExamClient", "default_device"]  # (re-exported)


class ExamClient(BaseExamClient):
    """The async client on CPython (see docs/sdk.md)."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        http_client: httpx.AsyncClient | None = None,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``http_client`` lets tests pass one built on ``httpx.MockTransport``."""
        if config.verify_receipts and not cryptography_available():
            # Fail now, not at the first ack.
            raise ExamSyncError(
                "verifying receipts needs the 'cryptography' package: install it, or pass"
                " ClientConfig(verify_receipts=False)"
            )
        http = HttpTransport(config.base_url, client=http_client, timeout=config.request_timeout)
        super().__init__(config, http, rng=rng, clock=clock, monotonic=monotonic)
        self.config = config
        self._transport = http  # the HttpApi, with its CPython-only package cache on disk

    def set_answer(self, quiz_code: str, value: str) -> int:
        """Store the answer durably (on disk when this returns) and queue it; its version."""
        return self._set_answer(quiz_code, value)

    async def download_package(self) -> Package:
        """The exam package, verified by SHA-256 and cached for offline use."""
        self._require_engine()
        return await self._transport.package(
            self.config.plan_id, package_dir(self.config.store_dir, self.config.plan_id)
        )

    # --- the adapter's I/O -----------------------------------------------------------------------

    def _session_store(
        self, candidate_id: str | None, auth_code: str | None, key: str | None
    ) -> SessionStore:
        config = self.config
        return SessionCache(
            config.store_dir, config.base_url, config.plan_id, candidate_id, auth_code, key
        )

    def _device_id_store(self) -> DeviceIdStore:
        return DeviceIdFile(self.config.store_dir, self.config.plan_id)

    async def _open_storage(self, candidate_id: str) -> tuple[Storage, StorageState]:
        config = self.config
        path = store_path(config.store_dir, config.plan_id, candidate_id, config.exam_code)
        # Waiting for the lock blocks: keep it off the event loop.
        storage = await asyncio.to_thread(SQLiteStorage, path, lock_timeout=config.lock_timeout)
        return storage, StorageState("sqlite", durable=True)

    async def _close_storage(self, storage: Storage) -> None:
        assert isinstance(storage, SQLiteStorage)
        storage.close()

    async def _connect_socket(self, url: str, token: str, last_position: str | None) -> Socket:
        return await SocketTransport.connect(
            url, token, last_position=last_position, open_timeout=self.config.open_timeout
        )

    def _new_verifier(self) -> ReceiptVerifier:
        return Ed25519Verifier()
