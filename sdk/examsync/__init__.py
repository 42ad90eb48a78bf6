"""examsync: answer sync for online exams — the SDK.

The core (this package's top-level modules) is sans-I/O and standard-library only, so it
imports unchanged on CPython 3.11+ and in Pyodide. The clients are the adapters:
``examsync.cpython`` (httpx, websockets, sqlite3) and ``examsync.pyodide`` (fetch, WebSocket,
IndexedDB, WebCrypto); :func:`create_client` picks the one for this interpreter. Importing
``examsync`` loads neither. See docs/sdk.md and docs/protocol.md.
"""

from __future__ import annotations

from .adapters import adapter, adapter_name, create_client
from .answers import AnswerState
from .backoff import Backoff
from .connection import (
    Connection,
    ConnectionChanged,
    ConnectionConfig,
    ConnectionState,
    SaveChannel,
)
from .engine import Engine, EngineConfig, OutboxState, SaveRequest
from .events import (
    Alert,
    AnswerAcknowledged,
    AnswerOverridden,
    DeliveryFailure,
    DeviceChanged,
    Event,
    ProgressReloaded,
    RestoreReport,
    StorageState,
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
    ReceiptError,
    RemoteProtocolError,
    ServerError,
    StorageError,
    StorageFullError,
    StoreLockedError,
    TransportError,
)
from .frames import ExamEnded, ReloadState, Resumed, StageChanged
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
from .receipts import ReceiptKeys, ReceiptVerifier, parse_public_keys
from .storage import Changes, LocalAnswer, MemoryStorage, OutboxEntry, Snapshot, Storage, Upload
from .uploads import UploadOutcome, UploadQueue

__all__ = [
    "AckStatus",
    "Alert",
    "AnswerAcknowledged",
    "AnswerBehavior",
    "AnswerEntry",
    "AnswerOverridden",
    "AnswerResult",
    "AnswerState",
    "AuthenticationError",
    "Backoff",
    "Behavior",
    "Changes",
    "ChecksumMismatch",
    "Connection",
    "ConnectionChanged",
    "ConnectionConfig",
    "ConnectionState",
    "DeliveryFailure",
    "Device",
    "DeviceChanged",
    "Engine",
    "EngineConfig",
    "Event",
    "ExamEnded",
    "ExamSyncError",
    "LocalAnswer",
    "LocalProtocolError",
    "MemoryStorage",
    "Metadata",
    "NavigationStep",
    "OutboxEntry",
    "OutboxState",
    "ProgressReloaded",
    "ProtocolError",
    "RateLimitedError",
    "Receipt",
    "ReceiptError",
    "ReceiptKeys",
    "ReceiptPayload",
    "ReceiptVerifier",
    "ReloadState",
    "RemoteProtocolError",
    "RestoreAnswer",
    "RestoreMetadata",
    "RestoreReport",
    "RestoreResponse",
    "Resumed",
    "SaveAck",
    "SaveChannel",
    "SavePayload",
    "SaveRequest",
    "ServerError",
    "Snapshot",
    "StageChanged",
    "Storage",
    "StorageError",
    "StorageFullError",
    "StorageState",
    "StoreLockedError",
    "SyncState",
    "SyncStatus",
    "TransportError",
    "Upload",
    "UploadOutcome",
    "UploadQueue",
    "adapter",
    "adapter_name",
    "canonical_json",
    "checksum",
    "create_client",
    "parse_public_keys",
    "verify_checksum",
]
