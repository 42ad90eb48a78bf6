"""SyncExamClient: the async client driven from plain (blocking) code, for scripts and tools.

It runs :class:`~examsync.cpython.client.ExamClient` on an event loop in a background thread;
every method hands its work to that loop and blocks until it is done, so the sync machines are
still only touched from one thread. Listeners are called on that background thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, TypeVar

from ..events import RestoreReport, SyncState
from ..messages import Receipt
from ..storage import LocalAnswer
from .client import ClientConfig, ClientEvent, ExamClient
from .transport import Package, Session

__all__ = ["SyncExamClient"]

T = TypeVar("T")


class SyncExamClient:
    """The blocking twin of :class:`ExamClient`: same methods, no ``await``."""

    def __init__(self, config: ClientConfig, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="examsync-sync-client", daemon=True
        )
        self._thread.start()

        async def build() -> ExamClient:
            return ExamClient(config, **kwargs)

        self._client = self._run(build())

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _call(self, fn: Callable[[], T]) -> T:
        async def call() -> T:
            return fn()

        return self._run(call())

    def login(
        self,
        *,
        candidate_id: str | None = None,
        auth_code: str | None = None,
        key: str | None = None,
    ) -> Session:
        return self._run(
            self._client.login(candidate_id=candidate_id, auth_code=auth_code, key=key)
        )

    def download_package(self) -> Package:
        return self._run(self._client.download_package())

    def set_answer(self, quiz_code: str, value: str) -> int:
        return self._call(lambda: self._client.set_answer(quiz_code, value))

    def upload_capture(
        self, kind: str, data: bytes, content_type: str, captured_at: float | None = None
    ) -> str:
        """``client.uploads.capture``: stored durably and queued; returns the captureId."""
        return self._run(self._client.uploads.capture(kind, data, content_type, captured_at))

    def log(self, event: str, level: str = "info", data: dict[str, Any] | None = None) -> None:
        """``client.uploads.log``: buffered into the next log batch."""
        self._call(lambda: self._client.uploads.log(event, level, data))

    def dismiss_conflict(self, quiz_code: str) -> bool:
        return self._call(lambda: self._client.dismiss_conflict(quiz_code))

    def record_navigation(self, from_quiz: str, to_quiz: str) -> None:
        self._call(lambda: self._client.record_navigation(from_quiz, to_quiz))

    def record_behavior(self, *, focus_ms: int = 0, keystrokes: int = 0) -> None:
        self._call(lambda: self._client.record_behavior(focus_ms=focus_ms, keystrokes=keystrokes))

    @property
    def answers(self) -> Mapping[str, LocalAnswer]:
        return self._call(lambda: self._client.answers)

    @property
    def receipts(self) -> Mapping[str, Receipt]:
        return self._call(lambda: self._client.receipts)

    @property
    def sync_state(self) -> SyncState:
        return self._call(lambda: self._client.sync_state)

    @property
    def device_id(self) -> str:
        return self._call(lambda: self._client.device_id)

    def add_listener(self, callback: Callable[[ClientEvent], None]) -> Callable[[], None]:
        """``callback`` runs on the client's background thread."""
        remove = self._call(lambda: self._client.add_listener(callback))
        return lambda: self._call(remove)

    def wait_synced(self, timeout: float | None = None) -> bool:
        return self._run(self._client.wait_synced(timeout))

    def flush(self, timeout: float | None = None) -> bool:
        return self._run(self._client.flush(timeout))

    def restore(self) -> RestoreReport:
        return self._run(self._client.restore())

    def take_over(self) -> Session:
        return self._run(self._client.take_over())

    def close(self) -> None:
        """Close the client, then stop the loop and its thread."""
        if not self._loop.is_running():
            return
        try:
            self._run(self._client.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> SyncExamClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
