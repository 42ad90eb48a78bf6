"""Every error the examsync SDK raises.

The hierarchy::

    ExamSyncError
    ├── ProtocolError                 a message broke the wire contract (DESIGN §4)
    │   ├── LocalProtocolError        ... on our side: we were asked to send something invalid
    │   └── RemoteProtocolError       ... from the server: malformed JSON, wrong types, a receipt
    │       │                             that does not match what was sent, a wrong identity
    │       ├── ChecksumMismatch      the checksum in a payload does not match its content
    │       └── ReceiptError          a save receipt's signature does not verify (or its key
    │                                     is unknown): the save counts as not acknowledged
    ├── StorageError                  local durable storage failed; nothing was reported queued
    │   ├── StorageFullError          the device's storage quota is used up (IndexedDB)
    │   └── StoreLockedError          another client holds this candidate's store on this device
    ├── TransportError                the request did not get an answer (network, timeout)
    └── ServerError                   the server answered with ``{"error": {...}}``
        ├── AuthenticationError       401 / 403: the session is not (or no longer) valid
        └── RateLimitedError          429: the server asks us to slow down

Exceptions carry the fields a caller needs to act on (``quiz_code``, ``version``, ``status``,
``code``...), not only a message. Foreign exceptions are translated at the boundary that saw them
(``raise TransportError(...) from exc``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "AuthenticationError",
    "ChecksumMismatch",
    "ExamSyncError",
    "LocalProtocolError",
    "ProtocolError",
    "RateLimitedError",
    "ReceiptError",
    "RemoteProtocolError",
    "ServerError",
    "StorageError",
    "StorageFullError",
    "StoreLockedError",
    "TransportError",
]


class ExamSyncError(Exception):
    """Base class of every examsync error."""


class ProtocolError(ExamSyncError):
    """A message does not follow the wire contract."""


class LocalProtocolError(ProtocolError):
    """We were asked to produce an invalid message (a bug or bad input in the caller)."""


class RemoteProtocolError(ProtocolError):
    """The server sent something that does not follow the contract.

    ``path`` names the offending part of the message (``"results.Q001.version"``) when known.
    Nothing of such a message is applied to local state.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class ChecksumMismatch(RemoteProtocolError):
    """The checksum carried by a payload is not the checksum of its content."""

    def __init__(self, *, expected: str, actual: object) -> None:
        super().__init__(
            f"checksum mismatch: payload says {actual!r}, content hashes to {expected}",
            path="checksum",
        )
        self.expected = expected
        self.actual = actual


class ReceiptError(RemoteProtocolError):
    """A receipt's Ed25519 signature does not verify against the server's published key.

    ``key_id`` is the key the receipt names (unknown keys are refused too). The driver treats the
    whole ack as a failed send, so the answer stays queued and is sent again.
    """

    def __init__(self, message: str, *, quiz_code: str, key_id: str) -> None:
        super().__init__(message, path=f"results.{quiz_code}.receipt")
        self.quiz_code = quiz_code
        self.key_id = key_id


class StorageError(ExamSyncError):
    """Local durable storage could not load or commit; the change it carried did not happen."""

    def __init__(self, message: str, *, operation: str | None = None) -> None:
        super().__init__(message)
        self.operation = operation


class StorageFullError(StorageError):
    """The browser refused a write for lack of quota (``QuotaExceededError``).

    Nothing of the write was stored; the adapter keeps the change in memory, retries, and
    reports the state with a :class:`~examsync.events.StorageState` event.
    """


class StoreLockedError(StorageError):
    """Another client (``holder``: its pid, when known) writes this store; we waited ``timeout``.

    One writer per candidate per device: a second client waits for the lock or gets this,
    rather than interleaving versions with the first.
    """

    def __init__(self, path: str, *, holder: int | None, timeout: float) -> None:
        who = f"process {holder}" if holder is not None else "another client"
        super().__init__(f"{path} is held by {who} (waited {timeout:g} s)", operation="lock")
        self.path = path
        self.holder = holder
        self.timeout = timeout


class TransportError(ExamSyncError):
    """A request got no usable answer: connection refused or cut, timeout, offline."""

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


class ServerError(ExamSyncError):
    """The server refused a request with ``{"error": {"code", "message", "details"}}``.

    ``status`` is the HTTP status (or 0 when the error came over the WebSocket).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code} ({status}): {message}")
        self.message = message
        self.code = code
        self.status = status
        self.details: Mapping[str, Any] = dict(details or {})

    @property
    def retryable(self) -> bool:
        """True when the same request may succeed later (server trouble, rate limit)."""
        return self.status >= 500 or self.status in (0, 408, 425, 429)

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked us to wait before trying again (``details.retryAfter``, or
        a ``Retry-After`` header the transport put there), if it said."""
        value = self.details.get("retryAfter")
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
        return None


class AuthenticationError(ServerError):
    """The session token was refused (401) or does not allow this (403)."""


class RateLimitedError(ServerError):
    """The server answered 429; ``details`` may hold ``retryAfter`` in seconds."""
