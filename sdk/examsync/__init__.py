"""examsync: answer sync for online exams — the SDK.

The core (this package's top-level modules) is sans-I/O and standard-library only, so it
imports unchanged on CPython 3.11+ and in Pyodide. See docs/sdk.md and docs/protocol.md.
"""

from __future__ import annotations

from .backoff import Backoff
from .engine import Engine, EngineConfig, OutboxState, SaveRequest
from .events import (
    AnswerAcknowledged,
    AnswerSuperseded,
    DeliveryFailure,
    Event,
    RestoreReport,
    SyncState,
    SyncStatus,
)
from .exceptions import (
    AuthenticationError,
    ChecksumMismatch,
    ExamSyncError,
    LocalProtocolError,
    ProtocolError,
    RateLimitedError,
    RemoteProtocolError,
    ServerError,
    StorageError,
    TransportError,
)
from .messages import (
    AckStatus,
    AnswerBehavior,
    AnswerEntry,
    AnswerResult,
    Behavior,
    Device,
    Metadata,
    NavigationStep,
    Receipt,
    ReceiptPayload,
    RestoreAnswer,
    RestoreMetadata,
    RestoreResponse,
    SaveAck,
    SavePayload,
)
from .protocol import canonical_json, checksum, verify_checksum
from .storage import Changes, LocalAnswer, MemoryStorage, OutboxEntry, Snapshot, Storage

__all__ = [
    "AckStatus",
    "AnswerAcknowledged",
    "AnswerBehavior",
    "AnswerEntry",
    "AnswerResult",
    "AnswerSuperseded",
    "AuthenticationError",
    "Backoff",
    "Behavior",
    "Changes",
    "ChecksumMismatch",
    "DeliveryFailure",
    "Device",
    "Engine",
    "EngineConfig",
    "Event",
    "ExamSyncError",
    "LocalAnswer",
    "LocalProtocolError",
    "MemoryStorage",
    "Metadata",
    "NavigationStep",
    "OutboxEntry",
    "OutboxState",
    "ProtocolError",
    "RateLimitedError",
    "Receipt",
    "ReceiptPayload",
    "RemoteProtocolError",
    "RestoreAnswer",
    "RestoreMetadata",
    "RestoreReport",
    "RestoreResponse",
    "SaveAck",
    "SavePayload",
    "SaveRequest",
    "ServerError",
    "Snapshot",
    "Storage",
    "StorageError",
    "SyncState",
    "SyncStatus",
    "TransportError",
    "canonical_json",
    "checksum",
    "verify_checksum",
]
