"""Captures and log batches waiting to be uploaded: the media side of the outbox (sans-I/O).

Answers go through the :class:`~examsync.engine.Engine`; captures (webcam, screen, mobile,
audio) and batches of log entries go through this queue, with the same promise: an upload is
in local durable storage before :meth:`UploadQueue.add` returns, and leaves it only when the
server has acknowledged it (``stored``, or ``duplicate``: it already had it) or refused it for
good (a 4xx other than 408/429, reported, never retried in a loop). Everything else — no
answer, 5xx, 408, 429 — is retried with exponential backoff and full jitter, at once after a
reconnect, honouring the server's ``Retry-After``. One upload is in flight at a time: media is
bulky, and answers must not queue behind it on a thin link.

The upload's id is the ``captureId`` / ``batchId`` the server sees, so a retry after a lost
answer is recognised there as the same upload.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .backoff import Backoff
from .storage import Changes, Storage, Upload

__all__ = ["Upload", "UploadOutcome", "UploadQueue"]


@dataclass(frozen=True, slots=True)
class UploadOutcome:
    """What became of an upload: done (``stored``/``duplicate``), or ``refused`` for good."""

    upload_id: str
    kind: str
    status: str
    detail: str = ""


@dataclass
class _Schedule:
    due: float
    attempts: int = 0


@dataclass
class UploadQueue:
    storage: Storage
    rng: Callable[[], float]
    backoff: Backoff = field(default_factory=Backoff)
    _pending: dict[str, Upload] = field(default_factory=dict)
    _schedule: dict[str, _Schedule] = field(default_factory=dict)
    _in_flight: str | None = None

    def __post_init__(self) -> None:
        for upload in sorted(self.storage.load().uploads.values(), key=lambda u: u.created_at):
            self._pending[upload.upload_id] = upload
            self._schedule[upload.upload_id] = _Schedule(due=0.0)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, upload: Upload) -> None:
        """Store the upload durably (StorageError if that fails), then schedule it now."""
        if upload.upload_id in self._pending:
            raise ValueError(f"upload {upload.upload_id!r} is already queued")
        self.storage.commit(Changes(uploads_put={upload.upload_id: upload}))
        self._pending[upload.upload_id] = upload
        self._schedule[upload.upload_id] = _Schedule(due=0.0)

    def next_upload(self, now: float) -> Upload | None:
        """The oldest upload that is due, marked in flight; None if one is already in flight."""
        if self._in_flight is not None:
            return None
        for upload_id, schedule in self._schedule.items():
            if schedule.due <= now:
                self._in_flight = upload_id
                return self._pending[upload_id]
        return None

    def next_deadline(self) -> float | None:
        """When an upload waiting out its backoff becomes due (None: nothing waits)."""
        if self._in_flight is not None or not self._schedule:
            return None
        return min(s.due for s in self._schedule.values())

    def answered(
        self, upload_id: str, status: int, retry_after: float | None, now: float
    ) -> UploadOutcome | None:
        """The server's HTTP status for the upload in flight; an outcome once it is settled."""
        self._in_flight = None
        if upload_id not in self._pending:
            return None
        kind = self._pending[upload_id].kind
        if 200 <= status < 300:
            self._forget(upload_id)
            return UploadOutcome(upload_id, kind, "stored")
        if 400 <= status < 500 and status not in (408, 429):
            self._forget(upload_id)  # sending it again would be refused again
            return UploadOutcome(upload_id, kind, "refused", f"HTTP {status}")
        self._retry(upload_id, now, retry_after)
        return None

    def failed(self, upload_id: str, now: float) -> None:
        """No answer came (the network, a timeout): try again after a backoff."""
        self._in_flight = None
        if upload_id in self._pending:
            self._retry(upload_id, now, None)

    def connection_restored(self, now: float) -> None:
        for schedule in self._schedule.values():
            schedule.due = min(schedule.due, now)

    def _retry(self, upload_id: str, now: float, retry_after: float | None) -> None:
        schedule = self._schedule[upload_id]
        schedule.attempts += 1
        delay = self.backoff.delay(schedule.attempts, self.rng())
        schedule.due = now + max(delay, retry_after or 0.0)

    def _forget(self, upload_id: str) -> None:
        self.storage.commit(Changes(uploads_delete=frozenset({upload_id})))
        del self._pending[upload_id]
        del self._schedule[upload_id]
