"""Which edit of an answer the candidate made last, and what the server keeps of it
(docs/protocol.md, "Several devices").

Edits of one answer, from any of the candidate's devices, are ordered by their stamp: when the
edit was made on the server's clock (the device's clock corrected by its offset to the server,
:class:`EditClock`), then the device's id, which only breaks a tie. The server keeps the
latest edit, whatever order edits arrive in. :data:`RULE` is the whole rule, written once for
the reference server and every stand-in for it; :func:`judge_edit` applies it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from .messages import AckStatus
from .protocol import format_timestamp, parse_timestamp

__all__ = ["RULE", "EditClock", "Order", "StoredEdit", "Verdict", "edit_time_ms", "judge_edit"]


class Order(Enum):
    """Where a sent edit stands against the one the server holds."""

    FIRST = "first"  # nothing is stored for this answer
    LATER = "later"  # made after the stored edit
    NOT_LATER = "not later"  # made before it, or the stored edit itself again


# (order, same value as stored) -> what the server does. Same value and later: `duplicate`,
# but the stored edit takes the later stamp, or an edit made in between elsewhere would win.
RULE: Mapping[tuple[Order, bool], AckStatus] = {
    (Order.FIRST, False): AckStatus.ACCEPTED,
    (Order.LATER, False): AckStatus.ACCEPTED,
    (Order.LATER, True): AckStatus.DUPLICATE,
    (Order.NOT_LATER, True): AckStatus.DUPLICATE,
    (Order.NOT_LATER, False): AckStatus.SUPERSEDED,
}


# RULE keyed by plain flags (made later, same value): judged per answer on the server's hot
# path, where hashing Enum members cost more than the rest of the judgement.
_BY_FLAGS: Mapping[tuple[bool, bool], AckStatus] = {
    (order is Order.LATER, same): status
    for (order, same), status in RULE.items()
    if order is not Order.FIRST
}
_ACCEPTED = AckStatus.ACCEPTED


class StoredEdit(NamedTuple):
    """The server's latest edit of one answer (a tuple: judged per answer on the hot path)."""

    version: int  # the server's count of this answer's kept changes
    value_sha256: str
    edited_at: int  # milliseconds since the epoch, server clock
    device: str  # "" for a device that sent no id


class Verdict(NamedTuple):
    status: AckStatus
    kept: StoredEdit  # what the server holds for the answer after this edit


def judge_edit(
    stored: StoredEdit | None, version: int, value_sha256: str, edited_at: int, device: str
) -> Verdict:
    """The rule for one sent edit: ``version`` is the device's proposal (its last known
    version + 1), ``edited_at`` the edit's time (:func:`edit_time_ms`)."""
    if stored is None:
        return Verdict(_ACCEPTED, StoredEdit(version, value_sha256, edited_at, device))
    later = (edited_at, device) > (stored.edited_at, stored.device)
    status = _BY_FLAGS[(later, value_sha256 == stored.value_sha256)]
    if status is _ACCEPTED:
        kept = StoredEdit(max(stored.version + 1, version), value_sha256, edited_at, device)
    elif later:
        kept = stored._replace(edited_at=edited_at, device=device)
    else:
        kept = stored
    return Verdict(status, kept)


def edit_time_ms(updated: str, received_ms: int) -> int:
    """The time the server orders an edit by: its ``updated``, but never after the server
    received it, so a device whose clock runs ahead cannot win every later conflict."""
    return min(round(parse_timestamp(updated) * 1000), received_ms)


@dataclass
class EditClock:
    """A device's stamps for its edits: its clock plus its known offset to the server's,
    never going backwards on this device (a clock set back would reorder its own edits).

    Each ``serverTime`` bounds the offset: the server stamped it between the request leaving
    and the answer arriving. The clock keeps what all the bounds seen allow together, so a
    slow answer (a server busy committing) cannot undo what a quick one measured; bounds that
    contradict the kept ones (the device's clock was changed, or drifted past them) replace
    them. ``offset`` is the middle of the kept bounds, ``spread`` how far either end lies."""

    offset: float = 0.0  # server time minus device time, seconds
    last_ms: int = 0  # the last stamp given, milliseconds since the epoch
    spread: float = math.inf  # the true offset is within offset ± spread (inf: nothing seen)

    def observe_server_time(
        self, server_time: str, device_now: float, sent_at: float | None = None
    ) -> None:
        """A ``serverTime`` that arrived at ``device_now`` (sign-in, an ack...), answering a
        request that left at ``sent_at`` (None: stamped at about ``device_now``)."""
        server = parse_timestamp(server_time)
        left = device_now if sent_at is None or sent_at > device_now else sent_at
        low, high = server - device_now, server - left
        if low <= self.offset + self.spread and self.offset - self.spread <= high:
            low = max(low, self.offset - self.spread)  # both hold: keep what both allow
            high = min(high, self.offset + self.spread)
        self.offset, self.spread = (low + high) / 2, (high - low) / 2

    def stamp(self, device_now: float) -> str:
        """The ``updated`` of an edit made now."""
        ms = max(round((device_now + self.offset) * 1000), self.last_ms + 1)
        self.last_ms = ms
        return format_timestamp(ms / 1000)
