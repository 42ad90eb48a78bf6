"""The client's uploads: captures and log batches, stored locally, then sent one at a time.

:class:`Uploader` is what ``client.uploads`` is: :meth:`Uploader.capture` stores a capture
durably and queues it; :meth:`Uploader.log` buffers a log entry, and buffered entries become one
stored batch when there are ``log_batch`` of them, after ``log_flush_seconds``, or at close
(entries not yet batched are the only thing a crash can take: diagnostics, not answers). The
rules of retrying are the core's (:class:`~examsync.uploads.UploadQueue`).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from ..exceptions import TransportError
from ..protocol import format_timestamp
from ..storage import Upload
from ..uploads import UploadQueue
from .api import HttpApi
from .timing import wait_woken

__all__ = ["Uploader"]

CAPTURE_KINDS = ("webcam", "screen", "mobile", "audio")
LOG_LEVELS = ("debug", "info", "warning", "error")


class Uploader:
    def __init__(
        self,
        queue: UploadQueue,
        http: HttpApi,
        *,
        clock: Callable[[], float],
        durable: Callable[[], Awaitable[None]],
        publish: Callable[[list[Any]], None],
        alert: Callable[[Exception, str], None],
        log_batch: int = 100,
        log_flush_seconds: float = 10.0,
    ) -> None:
        self._queue = queue
        self._http = http
        self._clock = clock
        self._durable = durable
        self._publish = publish
        self._alert = alert
        self._log_batch = log_batch
        self._log_flush_seconds = log_flush_seconds
        self._entries: list[dict[str, Any]] = []
        self._first_entry_at = 0.0
        self._wake = asyncio.Event()

    @property
    def pending(self) -> int:
        """Uploads stored here and not yet acknowledged (log entries not yet batched aside)."""
        return self._queue.pending

    async def capture(
        self, kind: str, data: bytes, content_type: str, captured_at: float | None = None
    ) -> str:
        """Store a capture durably and queue it; returns its captureId."""
        if kind not in CAPTURE_KINDS:
            raise ValueError(f"kind must be one of {', '.join(CAPTURE_KINDS)}")
        when = self._clock() if captured_at is None else captured_at
        upload = Upload(
            f"cap-{uuid.uuid4().hex}",
            "capture",
            {"kind": kind, "capturedAt": format_timestamp(when)},
            content_type,
            data,
            self._clock(),
        )
        self._queue.add(upload)
        await self._durable()
        self._wake.set()
        return upload.upload_id

    def log(self, event: str, level: str = "info", data: dict[str, Any] | None = None) -> None:
        """Buffer a log entry; it goes out in the next batch."""
        if level not in LOG_LEVELS:
            raise ValueError(f"level must be one of {', '.join(LOG_LEVELS)}")
        now = self._clock()
        if not self._entries:
            self._first_entry_at = now
        self._entries.append(
            {"at": format_timestamp(now), "level": level, "event": event, "data": data or {}}
        )
        if len(self._entries) >= self._log_batch:
            self._wake.set()

    async def flush_logs(self) -> None:
        """Store the buffered entries as one batch now."""
        if not self._entries:
            return
        entries, self._entries = self._entries, []
        batch_id = f"log-{uuid.uuid4().hex}"
        body = json.dumps({"batchId": batch_id, "entries": entries}, ensure_ascii=False)
        self._queue.add(
            Upload(batch_id, "logs", {}, "application/json", body.encode(), self._clock())
        )
        await self._durable()
        self._wake.set()

    def connection_restored(self) -> None:
        self._queue.connection_restored(self._clock())
        self._wake.set()

    async def run(self) -> None:
        """Forever: send what is due, one at a time; report what is settled."""
        while True:
            self._wake.clear()
            now = self._clock()
            try:
                if self._entries and (
                    len(self._entries) >= self._log_batch
                    or now - self._first_entry_at >= self._log_flush_seconds
                ):
                    await self.flush_logs()
                upload = self._queue.next_upload(now)
                if upload is not None:
                    await self._send(upload)
                    continue
                delay = self._next_wake(now)
            except Exception as exc:  # reported; the uploads stay stored and are tried again
                self._alert(exc, "uploads")
                delay = 0.5
            await wait_woken(self._wake, delay)

    async def _send(self, upload: Upload) -> None:
        try:
            response = await self._http.upload(upload)
        except TransportError:
            self._queue.failed(upload.upload_id, self._clock())
            return
        retry_after = _seconds(response.headers.get("retry-after"))
        outcome = self._queue.answered(
            upload.upload_id, response.status, retry_after, self._clock()
        )
        if outcome is not None:
            self._publish([outcome])

    def _next_wake(self, now: float) -> float | None:
        delays = []
        if (deadline := self._queue.next_deadline()) is not None:
            delays.append(deadline - now)
        if self._entries:
            delays.append(self._first_entry_at + self._log_flush_seconds - now)
        return max(0.01, min(delays)) if delays else None


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
