"""The engine's entries in the store's ``meta`` (key -> text), read and written in one place.

Adapters store ``meta`` as opaque text, so adding an entry here needs no schema change. The
overridden answers' records (``answers.py``) and the behaviour (``activity.py``) are kept beside
the code that writes them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import replace

from .edits import EditClock
from .exceptions import StorageError

IDENTITY = "identity"  # which plan, exam code and candidate the store belongs to
DEVICE_ID = "deviceId"  # made once per store (metadata.device.id)
EDIT_CLOCK = "editClock"  # [offset to the server's clock, last stamp in ms, spread or null]
LAST_ACK_AT = "lastAckAt"


def load_clock(meta: Mapping[str, str]) -> EditClock:
    """The edit clock as the last process left it: a restart, even offline, keeps the offset
    and never stamps before its last edit."""
    try:
        # A store from before the spread was kept has two entries: nothing bounds its offset.
        offset, last_ms, *rest = json.loads(meta.get(EDIT_CLOCK, "[0, 0]"))
        spread = math.inf if not rest or rest[0] is None else float(rest[0])
        return EditClock(float(offset), int(last_ms), spread)
    except (ValueError, TypeError) as exc:
        raise StorageError(f"stored edit clock is unreadable: {exc}", operation="load") from exc


def dump_clock(clock: EditClock) -> str:
    spread = None if math.isinf(clock.spread) else clock.spread  # JSON has no infinity
    return json.dumps([clock.offset, clock.last_ms, spread])


def first_entries(meta: Mapping[str, str], identity: str, new_device_id: str) -> dict[str, str]:
    """What a store opened by the engine lacks: its identity (a new store) and a device id (a
    new store, or one from before devices had ids). StorageError if it is someone else's."""
    stored = meta.get(IDENTITY)
    if stored is not None and stored != identity:
        raise StorageError(f"storage belongs to {stored}, not {identity}", operation="load")
    entries = {} if stored is not None else {IDENTITY: identity}
    if DEVICE_ID not in meta and new_device_id:
        entries[DEVICE_ID] = new_device_id
    return entries


def observed(clock: EditClock, server_time: str, now: float, sent_at: float | None) -> EditClock:
    """``clock`` once it saw ``server_time`` arrive at ``now``, in answer to a request sent at
    ``sent_at`` (:meth:`EditClock.observe_server_time`). RemoteProtocolError if
    ``server_time`` is no timestamp."""
    new = replace(clock)
    new.observe_server_time(server_time, now, sent_at)
    return new
