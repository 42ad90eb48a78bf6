"""What the sync engine reports to the front-end (drained with ``Engine.events_received()``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ._validate import frozen_map
from .exceptions import ExamSyncError, StorageError
from .messages import AckStatus, Receipt

__all__ = [
    "Alert",
    "AnswerAcknowledged",
    "AnswerOverridden",
    "DeliveryFailure",
    "DeviceChanged",
    "Event",
    "ProgressReloaded",
    "RestoreReport",
    "StorageState",
    "SyncState",
    "SyncStatus",
]


class SyncStatus(Enum):
    """The one word a candidate's screen shows about their answers."""

    SYNCED = "synced"  # nothing waits: every answer here is what the server keeps
    PENDING = "pending"  # some answers are only on this device, on their way
    OFFLINE = "offline"  # no connection (or the server cannot be reached); answers wait here
    ERROR = "error"  # the server refused the last save; retrying, see DeliveryFailure
    # The exam continues on another device: edits here stay on this device (pending, never
    # synced) until it takes over again. Outranks the others.
    REPLACED = "replaced"


@dataclass(frozen=True, slots=True)
class SyncState:
    """Emitted whenever status, pending count, last ack, in-flight or overridden changes."""

    status: SyncStatus
    pending: int  # answers not yet acknowledged
    oldest_pending_age: float | None  # seconds the oldest of them has waited, None if none
    last_ack_at: float | None  # when the server last acknowledged a save (epoch seconds)
    in_flight: bool  # a save request is out
    # Questions whose edit on this device the server did not keep (a later edit elsewhere
    # won): the device holds the server's value; show them until dismissed or edited again.
    overridden: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AnswerAcknowledged:
    """The server keeps this device's edit (accepted, or it had the same value already) as
    ``version``, the version it assigned."""

    quiz_code: str
    version: int
    status: AckStatus
    receipt: Receipt | None


@dataclass(frozen=True, slots=True)
class AnswerOverridden:
    """An edit of this device was not kept: a later edit of the same answer (on another
    device) won. The device now holds the server's edit (``value``, ``version``, ``updated``);
    ``lost_value`` is what the candidate typed here.

    Also the record the store keeps while the answer is overridden (``SyncState.overridden``),
    until the page dismisses it (``dismiss_conflict``) or the candidate edits the answer again.
    Emitted again if a newer edit of the server's replaces ``value`` meanwhile.
    """

    quiz_code: str
    lost_value: str
    value: str
    version: int
    updated: str


@dataclass(frozen=True, slots=True)
class DeliveryFailure:
    """A save did not get through; the engine retries it at ``retry_at``."""

    batch_id: int
    error: ExamSyncError
    attempt: int  # consecutive failures so far
    retry_at: float


@dataclass(frozen=True, slots=True)
class DeviceChanged:
    """Another device of the candidate became the active one, or this device is again
    (docs/protocol.md, "Several devices"): ``device_id`` from ``since`` (ISO-8601, the
    server's clock) under the plan's ``policy`` (``"single"`` or ``"merge"``).

    ``this_device``: it names this device. ``replaced``: this device may no longer save edits
    made from when it was replaced on (``single``): this ``since``, or an earlier takeover's
    when another device took over before (a later takeover does not release them); they
    wait here until ``client.take_over()``. Emitted once per new takeover, however many
    frames, refusals or sign-ins tell of it.
    """

    device_id: str
    since: str
    policy: str
    this_device: bool
    replaced: bool


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """The outcome of merging a restore (seed 002 §3.2, §5.2), per question code.

    ``restored``: the server's edit replaced the local one. ``overridden``: among those, the
    ones where a queued local edit was older than the server's and lost (an
    :class:`AnswerOverridden` each). ``kept_local``: a queued local edit is later than the
    server's and will be sent. ``resent``: acknowledged before, but the server no
    longer has it (or has less); sent again above the server's version. ``missing``: the server
    could not read it back (a partial restore); the local answer is left as it is.
    ``unconfirmed``: a receipt this device holds is not honoured by the restore (the server
    returned nothing, or a lower version, for a version it signed for).
    """

    restored: tuple[str, ...] = ()
    kept_local: tuple[str, ...] = ()
    resent: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    unconfirmed: tuple[str, ...] = ()
    overridden: tuple[str, ...] = ()

    @property
    def partial(self) -> bool:
        return bool(self.missing)


@dataclass(frozen=True, slots=True)
class Alert:
    """A problem a driver handled and went on from (logged too): shown, never raised.

    ``where`` names the part that saw it: ``"socket"``, ``"save"``, ``"restore"``, ``"keys"``,
    ``"login"``, ``"listener"``... For example a malformed frame, a refused socket handshake,
    a receipt that did not verify, or an unexpected exception in a background task.
    """

    error: ExamSyncError
    where: str


@dataclass(frozen=True, slots=True)
class StorageState:
    """Where this device keeps the answers, and whether that is durable right now.

    A client emits it at login and whenever it changes. ``durable`` False means answers are
    held in memory only (they still go to the server, but a reload or crash would lose what the
    server has not acknowledged): ``backend`` ``"memory"`` when IndexedDB could not open at all,
    or the usual backend with ``error`` (a :class:`~examsync.exceptions.StorageFullError`...)
    while its writes fail and are retried. Show it: the candidate should not close the page.
    """

    backend: str  # "sqlite", "indexeddb" or "memory"
    durable: bool
    error: StorageError | None = None


@dataclass(frozen=True, slots=True)
class ProgressReloaded:
    """The candidate's progress fetched afresh (``GET /api/v1/me``: status, current stage,
    deadline) after the server said ``reload_state``: events that would have moved it were
    missed, so what the screen shows from events is replaced by this."""

    progress: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "progress", frozen_map(self.progress))


Event = (
    SyncState
    | AnswerAcknowledged
    | AnswerOverridden
    | DeliveryFailure
    | RestoreReport
    | DeviceChanged
)
