"""Which of the candidate's devices may save: the engine's record of the active device, and
what a replaced device may still send (docs/protocol.md, "Several devices").

Under the plan's ``single`` policy one device is active; a sign-in on another takes over from
``since`` (the server's clock), and this device is *replaced*: the server refuses its saves that
carry an edit stamped from ``since`` on (``409 device_replaced``) and still takes edits made
before. Under ``merge`` every device saves; a sign-in elsewhere is only news. The engine learns
the active device from a ``device_active`` frame, a sign-in's ``activeDevice``, or the refusal,
each possibly late, twice, or out of order, so a record only ever gives way to a later takeover
(``since``, then the device id, ordered).

The role, by what a record says (``ROLE_TRANSITIONS``)::

    role \\ record      this device   another (single)        another (merge)   older than known
    ACTIVE             ACTIVE        REPLACED                ACTIVE            ACTIVE
    REPLACED           ACTIVE        REPLACED (since moves)  ACTIVE            REPLACED

And what the outbox does in each::

    ACTIVE     every entry may go
    REPLACED   entries stamped before ``since`` go (the server takes them); the rest wait in
               the outbox, pending and never synced, until this device takes over again (a
               sign-in here: ``client.take_over()``) or the server names it active
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .events import DeviceChanged
from .exceptions import ExamSyncError, RemoteProtocolError, ServerError, StorageError
from .protocol import parse_timestamp
from .storage import OutboxEntry

__all__ = [
    "ROLE_TRANSITIONS",
    "ActiveDevice",
    "DeviceGate",
    "Role",
    "device_replaced_body",
    "later_than",
    "read_active_device",
    "refuses",
    "replaced_by",
]

ACTIVE_DEVICE_KEY = "activeDevice"  # the store's meta entry: [device id, since, policy]
REPLACED_CODE = "device_replaced"


class Role(Enum):
    ACTIVE = "active"  # this device's saves are taken (the active one, merge, or nothing known)
    REPLACED = "replaced"  # another device took over under `single`: edits from `since` wait


class _Seen(Enum):
    THIS = "this device"
    OTHER_SINGLE = "another device, single"
    OTHER_MERGE = "another device, merge"
    STALE = "older than the record known"


ROLE_TRANSITIONS: Mapping[tuple[Role, _Seen], Role] = {
    (Role.ACTIVE, _Seen.THIS): Role.ACTIVE,
    (Role.ACTIVE, _Seen.OTHER_SINGLE): Role.REPLACED,
    (Role.ACTIVE, _Seen.OTHER_MERGE): Role.ACTIVE,
    (Role.ACTIVE, _Seen.STALE): Role.ACTIVE,
    (Role.REPLACED, _Seen.THIS): Role.ACTIVE,
    (Role.REPLACED, _Seen.OTHER_SINGLE): Role.REPLACED,
    (Role.REPLACED, _Seen.OTHER_MERGE): Role.ACTIVE,
    (Role.REPLACED, _Seen.STALE): Role.REPLACED,
}


def _ms(timestamp: str) -> int:
    return round(parse_timestamp(timestamp) * 1000)  # as the server compares `updated` with it


@dataclass(frozen=True, slots=True)
class ActiveDevice:
    """The candidate's active device as the server recorded it: ``device_id`` from ``since``
    (ISO-8601, the server's clock), under the plan's ``policy`` (``single`` or ``merge``)."""

    device_id: str
    since: str
    policy: str
    since_ms: int

    @classmethod
    def of(cls, device_id: str, since: str, policy: str) -> ActiveDevice:
        """RemoteProtocolError if ``since`` is no timestamp."""
        return cls(device_id, since, policy, _ms(since))

    @property
    def order(self) -> tuple[int, str]:
        return (self.since_ms, self.device_id)


def read_active_device(value: object, policy: str) -> ActiveDevice | None:
    """A sign-in's ``activeDevice`` (``{"deviceId", "since"}``), or None where it is absent
    or unreadable (a server from before devices knew each other)."""
    if not isinstance(value, Mapping):
        return None
    device_id, since = value.get("deviceId"), value.get("since")
    if not isinstance(device_id, str) or not device_id or not isinstance(since, str):
        return None
    try:
        return ActiveDevice.of(device_id, since, policy or "single")
    except RemoteProtocolError:
        return None


def refuses(record: ActiveDevice | None, device_id: str, updated: Iterable[str]) -> bool:
    """The server's check of a save (docs/protocol.md), written once for every stand-in of it:
    under ``single``, a save from a device other than the active one is refused whole when it
    carries an edit stamped from ``since`` on. A save without a device id is never refused."""
    if record is None or record.policy == "merge" or device_id in ("", record.device_id):
        return False
    return any(_ms(stamp) >= record.since_ms for stamp in updated)


def later_than(record: ActiveDevice | None, now: float) -> float:
    """A new takeover's ``since`` (epoch seconds): ``now``, but always after the one before, so
    that every device orders the takeovers alike (the server's clock may repeat a millisecond
    or step back)."""
    if record is None:
        return now
    return max(now, (record.since_ms + 1) / 1000)


def device_replaced_body(record: ActiveDevice) -> dict[str, Any]:
    """The ``409`` error body of a refused save (HTTP, and a socket ``error`` frame's)."""
    return {
        "error": {
            "code": REPLACED_CODE,
            "message": "this exam continues on another device",
            "details": {"activeDevice": record.device_id, "since": record.since},
        }
    }


def replaced_by(error: ExamSyncError) -> ActiveDevice | None:
    """The takeover a ``409 device_replaced`` names (``details.activeDevice``, ``since``); None
    for any other error, or one whose details do not read (then it is an ordinary failure)."""
    if not isinstance(error, ServerError) or error.code != REPLACED_CODE:
        return None
    device_id, since = error.details.get("activeDevice"), error.details.get("since")
    if not isinstance(device_id, str) or not device_id or not isinstance(since, str):
        return None
    try:
        return ActiveDevice.of(device_id, since, "single")
    except RemoteProtocolError:
        return None


@dataclass(frozen=True, slots=True)
class DeviceGate:
    """This device's role and the record it follows; immutable (the engine commits the meta
    entry :meth:`seen` returns, then takes the new gate)."""

    this_device: str
    record: ActiveDevice | None = None
    role: Role = Role.ACTIVE

    @classmethod
    def load(cls, meta: Mapping[str, str], this_device: str) -> DeviceGate:
        """The gate as the store left it: a restart stays replaced (its edits keep waiting)."""
        stored = meta.get(ACTIVE_DEVICE_KEY)
        if stored is None:
            return cls(this_device)
        try:
            device_id, since, policy = json.loads(stored)
            record = ActiveDevice.of(str(device_id), str(since), str(policy))
        except (ValueError, TypeError, RemoteProtocolError) as exc:
            raise StorageError(f"stored active device is unreadable: {exc}") from exc
        return cls(this_device).seen(record)[0]

    @property
    def replaced(self) -> bool:
        return self.role is Role.REPLACED

    def seen(self, record: ActiveDevice) -> tuple[DeviceGate, dict[str, str], DeviceChanged | None]:
        """The gate after ``record``, the meta entry to store, and the event to report (None:
        nothing new; a sign-in naming this device before any other record is no news)."""
        known = self.record
        if known is not None and record.order <= known.order:
            if record.order < known.order:
                return self._moved(_Seen.STALE, known), {}, None
            return self, {}, None  # the same record again
        this = record.device_id == self.this_device
        kind = _Seen.THIS if this else _Seen.OTHER_MERGE
        if not this and record.policy != "merge":
            kind = _Seen.OTHER_SINGLE
        gate = self._moved(kind, record)
        meta = {ACTIVE_DEVICE_KEY: json.dumps([record.device_id, record.since, record.policy])}
        news = not this or (known is not None and known.device_id != self.this_device)
        event = DeviceChanged(record.device_id, record.since, record.policy, this, gate.replaced)
        return gate, meta, event if news else None

    def _moved(self, seen: _Seen, record: ActiveDevice) -> DeviceGate:
        return DeviceGate(self.this_device, record, ROLE_TRANSITIONS[(self.role, seen)])

    def may_send(self, entry: OutboxEntry) -> bool:
        """Whether the server would take ``entry`` from this device now."""
        if not self.replaced or self.record is None:
            return True
        try:
            return _ms(entry.updated) < self.record.since_ms
        except RemoteProtocolError:
            return True  # a stamp the server cannot read either: it answers, the engine copes

    def sendable(self, entries: Iterable[OutboxEntry]) -> list[OutboxEntry]:
        return [e for e in entries if self.may_send(e)]
