"""Wire messages (DESIGN §4, docs/protocol.md): the save, its ack and receipts, the restore.

Shared by the SDK and the reference server. Every message is a frozen slotted dataclass with
``to_wire()`` (a JSON-ready ``dict``) and ``from_wire(obj)``, which validates every field it
reads and raises :class:`~examsync.exceptions.RemoteProtocolError` naming the bad path. Unknown
extra keys are ignored so that either side may add fields (receipt payloads excepted: their
signature covers them byte for byte).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

from ._validate import (
    frozen_map,
    get_int,
    get_list,
    get_object,
    get_optional_object,
    get_str,
    get_timestamp,
    require_object,
)
from .exceptions import (
    AuthenticationError,
    RateLimitedError,
    RemoteProtocolError,
    ServerError,
)
from .protocol import CanonicalEncoder, checksum, decode_json, verify_checksum
from .receipts import Receipt, ReceiptPayload

__all__ = [
    "AckStatus",
    "AnswerBehavior",
    "AnswerEntry",
    "AnswerResult",
    "Behavior",
    "Device",
    "Metadata",
    "NavigationStep",
    "Receipt",
    "ReceiptPayload",
    "RestoreAnswer",
    "RestoreMetadata",
    "RestoreResponse",
    "SaveAck",
    "SavePayload",
    "parse_error",
    "read_save_response",
]

# --- the save payload (seed 002 §4.1) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Device:
    """``metadata.device``: ``type`` is ``PC`` or ``Mobile`` in the seed; free text here.
    ``id`` is ours: the device's id, made once and kept in its store ("" when not sent)."""

    type: str
    browser: str
    os: str
    id: str = ""

    def to_wire(self) -> dict[str, Any]:
        wire = {"type": self.type, "browser": self.browser, "os": self.os}
        if self.id:
            wire["id"] = self.id
        return wire

    @classmethod
    def from_wire(cls, obj: object, path: str = "device") -> Device:
        m = require_object(obj, path)
        return cls(
            type=get_str(m, "type", path),
            browser=get_str(m, "browser", path),
            os=get_str(m, "os", path),
            id=get_str(m, "id", path) if "id" in m else "",
        )


@dataclass(frozen=True, slots=True)
class NavigationStep:
    """One move between questions; ``from_quiz`` is the wire's ``from`` (a Python keyword)."""

    from_quiz: str
    to_quiz: str
    timestamp: str

    def to_wire(self) -> dict[str, Any]:
        return {"from": self.from_quiz, "to": self.to_quiz, "timestamp": self.timestamp}

    @classmethod
    def from_wire(cls, obj: object, path: str) -> NavigationStep:
        m = require_object(obj, path)
        return cls(
            from_quiz=get_str(m, "from", path),
            to_quiz=get_str(m, "to", path),
            timestamp=get_timestamp(m, "timestamp", path),
        )


@dataclass(frozen=True, slots=True)
class Behavior:
    """``metadata.behavior``: totals since the exam started on this device.

    Totals (not deltas) so that a resent payload says the same thing twice. ``focus_time`` is in
    whole milliseconds: integers keep the checksum independent of float formatting.
    """

    focus_time: int = 0
    edit_count: int = 0
    keystrokes: int = 0
    navigation: tuple[NavigationStep, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {
            "focusTime": self.focus_time,
            "editCount": self.edit_count,
            "keystrokes": self.keystrokes,
            "navigation": [step.to_wire() for step in self.navigation],
        }

    @classmethod
    def from_wire(cls, obj: object, path: str = "behavior") -> Behavior:
        m = require_object(obj, path)
        steps = get_list(m, "navigation", path)
        return cls(
            focus_time=get_int(m, "focusTime", path, minimum=0),
            edit_count=get_int(m, "editCount", path, minimum=0),
            keystrokes=get_int(m, "keystrokes", path, minimum=0),
            navigation=tuple(
                NavigationStep.from_wire(step, f"{path}.navigation[{i}]")
                for i, step in enumerate(steps)
            ),
        )


@dataclass(frozen=True, slots=True)
class Metadata:
    device: Device
    behavior: Behavior

    def to_wire(self) -> dict[str, Any]:
        return {"device": self.device.to_wire(), "behavior": self.behavior.to_wire()}

    @classmethod
    def from_wire(cls, obj: object, path: str = "metadata") -> Metadata:
        m = require_object(obj, path)
        return cls(
            device=Device.from_wire(get_object(m, "device", path), f"{path}.device"),
            behavior=Behavior.from_wire(get_object(m, "behavior", path), f"{path}.behavior"),
        )


@dataclass(frozen=True, slots=True)
class AnswerEntry:
    """One answer in a save: ``version`` is chosen by the client, increasing per answer."""

    value: str
    version: int
    updated: str

    def to_wire(self) -> dict[str, Any]:
        return {"value": self.value, "version": self.version, "updated": self.updated}

    @classmethod
    def from_wire(cls, obj: object, path: str) -> AnswerEntry:
        m = require_object(obj, path)
        return cls(
            value=get_str(m, "value", path),
            version=get_int(m, "version", path, minimum=1),
            updated=get_timestamp(m, "updated", path),
        )


@dataclass(frozen=True, slots=True)
class SavePayload:
    """The body of ``POST /api/v1/answers`` (seed 002 §4.1); ``checksum`` is added by to_wire."""

    exam_id: str  # plan_id
    test_code: str  # exam_code
    user_id: str  # candidate_id
    timestamp: str
    answers: Mapping[str, AnswerEntry]
    metadata: Metadata
    status: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "answers", frozen_map(self.answers))

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "examId": self.exam_id,
            "testCode": self.test_code,
            "userId": self.user_id,
            "timestamp": self.timestamp,
            "answers": {code: entry.to_wire() for code, entry in self.answers.items()},
            "metadata": self.metadata.to_wire(),
            "status": self.status,
        }
        wire["checksum"] = checksum(wire)
        return wire

    @classmethod
    def from_wire(cls, obj: object, *, quick: CanonicalEncoder | None = None) -> SavePayload:
        """Validate a received payload, its checksum first (over exactly what was received;
        ``quick``: as :func:`~examsync.protocol.verify_checksum`)."""
        m = require_object(obj, "")
        get_str(m, "checksum", "")
        verify_checksum(m, quick=quick)
        answers = get_object(m, "answers", "")
        return cls(
            exam_id=get_str(m, "examId", ""),
            test_code=get_str(m, "testCode", ""),
            user_id=get_str(m, "userId", ""),
            timestamp=get_timestamp(m, "timestamp", ""),
            answers={
                code: AnswerEntry.from_wire(entry, f"answers.{code}")
                for code, entry in answers.items()
            },
            metadata=Metadata.from_wire(get_object(m, "metadata", ""), "metadata"),
            status=get_str(m, "status", ""),
        )


# --- the save acknowledgement and its receipts --------------------------------------------------


class AckStatus(Enum):
    """What the server did with one answer of a save (examsync.edits: the latest edit wins)."""

    ACCEPTED = "accepted"  # kept: the latest edit of this answer so far
    DUPLICATE = "duplicate"  # the server already keeps this value
    SUPERSEDED = "superseded"  # an edit made later (on this or another device) is kept


@dataclass(frozen=True, slots=True)
class AnswerResult:
    """The server's verdict on one answer of a save (docs/protocol.md, "Several devices").

    ``version`` echoes the version that was sent; ``current_version`` is the version the server
    keeps after the save (assigned by it; any version, even below the sent one). A superseded
    answer carries the kept edit: ``current_value`` and ``current_updated``. The receipt signs
    what is kept.
    """

    status: AckStatus
    version: int
    current_version: int
    receipt: Receipt | None = None
    current_value: str | None = None
    current_updated: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "status": self.status.value,
            "version": self.version,
            "currentVersion": self.current_version,
            "receipt": None if self.receipt is None else self.receipt.to_wire(),
        }
        if self.current_value is not None:
            wire["currentValue"] = self.current_value
            wire["currentUpdated"] = self.current_updated
        return wire

    @classmethod
    def from_wire(cls, obj: object, path: str) -> AnswerResult:
        m = require_object(obj, path)
        raw_status = get_str(m, "status", path)
        try:
            status = AckStatus(raw_status)
        except ValueError:
            raise RemoteProtocolError(
                f"unknown status {raw_status!r}", path=f"{path}.status"
            ) from None
        version = get_int(m, "version", path, minimum=1)
        current = get_int(m, "currentVersion", path, minimum=1)
        current_value = current_updated = None
        if status is AckStatus.SUPERSEDED:  # the device takes the kept edit: it must be here
            current_value = get_str(m, "currentValue", path)
            current_updated = get_timestamp(m, "currentUpdated", path)
        receipt_obj = get_optional_object(m, "receipt", path)
        receipt = None if receipt_obj is None else Receipt.from_wire(receipt_obj, f"{path}.receipt")
        return cls(status, version, current, receipt, current_value, current_updated)


@dataclass(frozen=True, slots=True)
class SaveAck:
    """HTTP 200 body of ``POST /api/v1/answers``: one result per answer the server processed."""

    results: Mapping[str, AnswerResult]
    server_time: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "results", frozen_map(self.results))

    def to_wire(self) -> dict[str, Any]:
        return {
            "results": {code: result.to_wire() for code, result in self.results.items()},
            "serverTime": self.server_time,
        }

    @classmethod
    def from_wire(cls, obj: object) -> SaveAck:
        m = require_object(obj, "")
        results = get_object(m, "results", "")
        return cls(
            results={
                code: AnswerResult.from_wire(result, f"results.{code}")
                for code, result in results.items()
            },
            server_time=get_timestamp(m, "serverTime", ""),
        )


# --- restore (seed 002 §4.2 + checksum) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnswerBehavior:
    """Per-answer behaviour counters of the seed's cache structure (optional on the wire)."""

    focus_time: int
    edit_count: int
    keystrokes: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "focusTime": self.focus_time,
            "editCount": self.edit_count,
            "keystrokes": self.keystrokes,
        }

    @classmethod
    def from_wire(cls, obj: object, path: str) -> AnswerBehavior:
        m = require_object(obj, path)
        return cls(
            focus_time=get_int(m, "focusTime", path, minimum=0),
            edit_count=get_int(m, "editCount", path, minimum=0),
            keystrokes=get_int(m, "keystrokes", path, minimum=0),
        )


@dataclass(frozen=True, slots=True)
class RestoreAnswer:
    value: str
    version: int
    updated: str
    behavior: AnswerBehavior | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "value": self.value,
            "version": self.version,
            "updated": self.updated,
        }
        if self.behavior is not None:
            wire["behavior"] = self.behavior.to_wire()
        return wire

    @classmethod
    def from_wire(cls, obj: object, path: str) -> RestoreAnswer:
        m = require_object(obj, path)
        behavior = get_optional_object(m, "behavior", path)
        return cls(
            value=get_str(m, "value", path),
            version=get_int(m, "version", path, minimum=1),
            updated=get_timestamp(m, "updated", path),
            behavior=None
            if behavior is None
            else AnswerBehavior.from_wire(behavior, f"{path}.behavior"),
        )


@dataclass(frozen=True, slots=True)
class RestoreMetadata:
    last_sync: str | None = None
    version: int = 0
    status: str = ""
    device: Device | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "lastSync": self.last_sync,
            "version": self.version,
            "status": self.status,
            "device": None if self.device is None else self.device.to_wire(),
        }

    @classmethod
    def from_wire(cls, obj: object, path: str = "metadata") -> RestoreMetadata:
        m = require_object(obj, path)
        device = get_optional_object(m, "device", path)
        last_sync = m.get("lastSync")
        return cls(
            last_sync=None if last_sync is None else get_timestamp(m, "lastSync", path),
            version=get_int(m, "version", path, minimum=0),
            status=get_str(m, "status", path),
            device=None if device is None else Device.from_wire(device, f"{path}.device"),
        )


@dataclass(frozen=True, slots=True)
class RestoreResponse:
    """HTTP 200 body of ``GET /api/v1/answers/{exam_code}``.

    ``missing`` lists answers the server knows of but could not read back (a partial restore,
    seed 002 §5.2); the checksum covers everything but itself.
    """

    exam_id: str
    test_code: str
    user_id: str
    answers: Mapping[str, RestoreAnswer]
    metadata: RestoreMetadata
    navigation: tuple[NavigationStep, ...] = ()
    missing: tuple[str, ...] = ()
    server_time: str = field(default="1970-01-01T00:00:00.000Z")

    def __post_init__(self) -> None:
        object.__setattr__(self, "answers", frozen_map(self.answers))

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "examId": self.exam_id,
            "testCode": self.test_code,
            "userId": self.user_id,
            "answers": {code: answer.to_wire() for code, answer in self.answers.items()},
            "metadata": self.metadata.to_wire(),
            "navigation": [step.to_wire() for step in self.navigation],
            "missing": list(self.missing),
            "serverTime": self.server_time,
        }
        wire["checksum"] = checksum(wire)
        return wire

    @classmethod
    def from_wire(cls, obj: object) -> RestoreResponse:
        """Validate a restore response; the checksum is checked before anything else is read."""
        m = require_object(obj, "")
        get_str(m, "checksum", "")
        verify_checksum(m)
        answers = get_object(m, "answers", "")
        missing = get_list(m, "missing", "") if "missing" in m else []
        for i, code in enumerate(missing):
            if not isinstance(code, str):
                raise RemoteProtocolError("expected a string", path=f"missing[{i}]")
        navigation = get_list(m, "navigation", "") if "navigation" in m else []
        return cls(
            exam_id=get_str(m, "examId", ""),
            test_code=get_str(m, "testCode", ""),
            user_id=get_str(m, "userId", ""),
            answers={
                code: RestoreAnswer.from_wire(answer, f"answers.{code}")
                for code, answer in answers.items()
            },
            metadata=RestoreMetadata.from_wire(get_object(m, "metadata", ""), "metadata"),
            navigation=tuple(
                NavigationStep.from_wire(step, f"navigation[{i}]")
                for i, step in enumerate(navigation)
            ),
            missing=tuple(missing),
            server_time=get_timestamp(m, "serverTime", ""),
        )


# --- errors --------------------------------------------------------------------------------------

_ERROR_CLASSES: Mapping[int, type[ServerError]] = MappingProxyType(
    {401: AuthenticationError, 403: AuthenticationError, 429: RateLimitedError}
)


def parse_error(status: int, body: object) -> ServerError:
    """The typed error for a non-2xx answer whose body is ``{"error": {...}}``.

    A body of another shape (a proxy's HTML page, nothing) still yields a :class:`ServerError`
    with code ``http_<status>``: the status alone says whether a retry can help.
    """
    cls = _ERROR_CLASSES.get(status, ServerError)
    error = body.get("error") if isinstance(body, dict) else None
    if (
        isinstance(error, dict)
        and isinstance(error.get("code"), str)
        and isinstance(error.get("message"), str)
    ):
        details = error.get("details")
        return cls(
            error["message"],
            code=error["code"],
            status=status,
            details=details if isinstance(details, dict) else None,
        )
    return cls("response without an error object", code=f"http_{status}", status=status)


def read_save_response(status: int, body: object) -> SaveAck:
    """The answer to a save, read once for everyone who needs it (the receipt check, the
    engine): the :class:`SaveAck` of a 2xx; for any other status its error, raised.

    ``body`` is the raw bytes/str or the decoded JSON. Raises RemoteProtocolError if malformed.
    """
    decoded = decode_json(body) if isinstance(body, bytes | str) else body
    if not 200 <= status < 300:
        raise parse_error(status, decoded)
    return SaveAck.from_wire(decoded)
