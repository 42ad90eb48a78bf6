"""Which of the candidate's devices may save: the engine's record of the active device, and
what a replaced device may still send (docs/protocol.md, "Several devices").

Under the plan's ``single`` policy one device is active; a sign-in on another takes over from
``since`` (the server's clock), and this device is *replaced* from then: the server refuses its
saves that carry an edit stamped from that moment on (``409 device_replaced``) and still takes
edits made before. A later takeover (a third device) does not move that moment: edits made
while replaced wait for this device to take over again, whoever is active meanwhile. Under
``merge`` every device saves; a sign-in elsewhere is only news. The engine learns the active
device from a ``device_active`` frame, a sign-in's ``activeDevice``, or the refusal, each
possibly late, twice, or out of order, so a record only ever gives way to a later takeover
(``since``, then the device id, ordered). A device that missed the takeover that replaced it
and heard only a later one learns its moment from the refusal (``details.replacedSince``).

The role, by what a record says (``ROLE_TRANSITIONS``), and ``replaced_since``::

    role \\ record   this device   another (single)            another (merge)   older than known
    ACTIVE          ACTIVE        REPLACED (from its since)   ACTIVE            ACTIVE
    REPLACED        ACTIVE        REPLACED (moment kept)      ACTIVE            REPLACED

    replaced_since: set to the record's ``since`` on entering REPLACED; kept while REPLACED
    whatever later records say; lowered to a refusal's ``replacedSince`` when that is earlier;
    cleared (None) when ACTIVE. Stored with the record (a restart keeps it).

And what the outbox does in each::

    ACTIVE     every entry may go
    REPLACED   entries stamped before ``replaced_since`` go (the server takes them); the rest
               wait in the outbox, pending and never synced, until this device takes over
               again (a sign-in here: ``client.take_over()``) or the server names it active
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from .events import DeviceChanged
from .exceptions import ExamSyncError, RemoteProtocolError, ServerError, StorageError
from .protocol import format_timestamp, parse_timestamp
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
    "replaced_since_of",
    "server_sign_in",
]

ACTIVE_DEVICE_KEY = "activeDevice"  # the meta entry: [device id, since, policy, replaced since]
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


def refuses(
    record: ActiveDevice | None,
    device_id: str,
    updated: Iterable[str],
    replaced_since: str | None = None,
) -> bool:
    """The server's check of a save (docs/protocol.md), written once for every stand-in of it:
    under ``single``, a save from a device other than the active one is refused whole when it
    carries an edit stamped from when that device was replaced on (``replaced_since``; by
    default the active device's ``since``). A save without a device id is never refused."""
    if record is None or record.policy == "merge" or device_id in ("", record.device_id):
        return False
    limit = _ms(replaced_since or record.since)
    return any(_ms(stamp) >= limit for stamp in updated)


def server_sign_in(
    active: ActiveDevice | None,
    replaced: dict[str, str | None],
    device_id: str,
    *,
    activate: bool,
    now: float,
    policy: str,
) -> tuple[ActiveDevice | None, str | None]:
    """A sign-in as the server records it, for its stand-ins in tests: the active device
    after it, and the device it took over (None: none, or ``merge``). ``replaced`` maps
    every device signed in to when it was replaced (None while it is not): the first
    takeover since it was last active, which later ones do not move."""
    replaced.setdefault(device_id, None)
    if not activate or (active is not None and active.device_id == device_id):
        return active, None
    taken_over = active.device_id if active is not None and policy == "single" else None
    active = ActiveDevice.of(device_id, format_timestamp(later_than(active, now)), policy)
    for other, since in replaced.items():
        if since is None and other != device_id:
            replaced[other] = active.since
    replaced[device_id] = None
    return active, taken_over


def later_than(record: ActiveDevice | None, now: float) -> float:
    """A new takeover's ``since`` (epoch seconds): ``now``, but always after the one before, so
    that every device orders the takeovers alike (the server's clock may repeat a millisecond
    or step back)."""
    if record is None:
        return now
    return max(now, (record.since_ms + 1) / 1000)


def device_replaced_body(record: ActiveDevice, replaced_since: str | None = None) -> dict[str, Any]:
    """The ``409`` error body of a refused save (HTTP, and a socket ``error`` frame's)."""
    details = {"activeDevice": record.device_id, "since": record.since}
    return {
        "error": {
            "code": REPLACED_CODE,
            "message": "this exam continues on another device",
            "details": {**details, "replacedSince": replaced_since or record.since},
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


def replaced_since_of(error: ExamSyncError) -> str | None:
    """When a ``409 device_replaced`` says this device was replaced (``details.replacedSince``),
    or None where absent or unreadable (a server from before it: ``since`` stands)."""
    value = error.details.get("replacedSince") if isinstance(error, ServerError) else None
    if not isinstance(value, str):
        return None
    try:
        _ms(value)
    except RemoteProtocolError:
        return None
    return value


@dataclass(frozen=True, slots=True)
class DeviceGate:
    """This device's role and the record it follows; immutable (the engine commits the meta
    entry :meth:`seen` returns, then takes the new gate). While replaced, ``replaced_since``
    is when: the first takeover since this device was last active, which later takeovers do
    not move (edits made while replaced wait, whoever took over since)."""

    this_device: str
    record: ActiveDevice | None = None
    role: Role = Role.ACTIVE
    replaced_since: str | None = None  # ISO; None while active

    @classmethod
    def load(cls, meta: Mapping[str, str], this_device: str) -> DeviceGate:
        """The gate as the store left it: a restart stays replaced (its edits keep waiting).
        An entry without ``replaced_since`` (an older SDK's) is replaced from its ``since``."""
        stored = meta.get(ACTIVE_DEVICE_KEY)
        if stored is None:
            return cls(this_device)
        try:
            device_id, since, policy, *rest = json.loads(stored)
            record = ActiveDevice.of(str(device_id), str(since), str(policy))
            gate = cls(this_device).seen(record)[0]
            if gate.replaced and rest and rest[0] is not None:
                gate = replace(gate, replaced_since=str(rest[0]))
                _ms(gate.replaced_since or "")
        except (ValueError, TypeError, RemoteProtocolError) as exc:
            raise StorageError(f"stored active device is unreadable: {exc}") from exc
        return gate

    @property
    def replaced(self) -> bool:
        return self.role is Role.REPLACED

    def seen(
        self, record: ActiveDevice, replaced_since: str | None = None
    ) -> tuple[DeviceGate, dict[str, str], DeviceChanged | None]:
        """The gate after ``record``, the meta entry to store, and the event to report (None:
        nothing new; a sign-in naming this device before any other record is no news).
        ``replaced_since``: a refusal's (``details.replacedSince``), when it names a record
        no older than the one known: an earlier moment replaces this device from then."""
        known = self.record
        if known is not None and record.order <= known.order:
            if record.order < known.order:
                return self._moved(_Seen.STALE, known), {}, None
            gate = self._lowered(replaced_since)  # the same record again
            return gate, gate._entry() if gate != self else {}, None
        this = record.device_id == self.this_device
        kind = _Seen.THIS if this else _Seen.OTHER_MERGE
        if not this and record.policy != "merge":
            kind = _Seen.OTHER_SINGLE
        gate = self._moved(kind, record)._lowered(replaced_since)
        news = not this or (known is not None and known.device_id != self.this_device)
        event = DeviceChanged(record.device_id, record.since, record.policy, this, gate.replaced)
        return gate, gate._entry(), event if news else None

    def _moved(self, seen: _Seen, record: ActiveDevice) -> DeviceGate:
        role = ROLE_TRANSITIONS[(self.role, seen)]
        since = None if role is Role.ACTIVE else self.replaced_since or record.since
        return DeviceGate(self.this_device, record, role, since)

    def _lowered(self, replaced_since: str | None) -> DeviceGate:
        if replaced_since is None or self.replaced_since is None:
            return self
        if _ms(replaced_since) >= _ms(self.replaced_since):
            return self
        return replace(self, replaced_since=replaced_since)

    def _entry(self) -> dict[str, str]:
        record = self.record
        assert record is not None
        value = [record.device_id, record.since, record.policy, self.replaced_since]
        return {ACTIVE_DEVICE_KEY: json.dumps(value)}

    def may_send(self, entry: OutboxEntry) -> bool:
        """Whether the server would take ``entry`` from this device now."""
        return bool(self.sendable([entry]))

    def sendable(self, entries: Iterable[OutboxEntry]) -> list[OutboxEntry]:
        if self.replaced_since is None:
            return list(entries)
        limit = _ms(self.replaced_since)
        return [e for e in entries if _before(e.updated, limit)]


def _before(stamp: str, limit_ms: int) -> bool:
    try:
        return _ms(stamp) < limit_ms
    except RemoteProtocolError:
        return True  # a stamp the server cannot read either: it answers, the engine copes
