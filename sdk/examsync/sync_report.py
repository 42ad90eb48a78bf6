"""When to tell the server how many answers still wait on this device (``sync_state`` frames).

The supervisors' snapshot shows, per examinee, how many answers their device holds
unacknowledged and how long the oldest has waited, from what the SDK reports over the socket
(when the welcome offers ``sync_state``)::

    {"type": "sync_state", "pending": 3, "oldestPendingAge": 12.5}

A report goes out on a new socket at once, when ``pending`` changed (at most once per
``min_gap``, so typing does not send a frame per keystroke; the last change is still sent), and
every ``refresh`` seconds while answers wait. Pure: the driver passes the engine's
:class:`~examsync.events.SyncState` and the time, and sends what :meth:`SyncReporter.due`
returns on the open socket.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .events import SyncState

__all__ = ["SYNC_STATE_FEATURE", "SyncReporter", "sync_state_frame"]

SYNC_STATE_FEATURE = "sync_state"  # in welcome.features: the server takes these reports


def sync_state_frame(pending: int, oldest_pending_age: float | None) -> str:
    age = None if oldest_pending_age is None else round(max(0.0, oldest_pending_age), 3)
    return json.dumps({"type": "sync_state", "pending": pending, "oldestPendingAge": age})


@dataclass
class SyncReporter:
    min_gap: float = 1.0
    refresh: float = 10.0
    _sent: int | None = None  # the pending count last reported on this socket
    _sent_at: float | None = None

    def socket_opened(self) -> None:
        """A new socket knows nothing yet: the next :meth:`due` reports."""
        self._sent = self._sent_at = None

    def due(self, state: SyncState, now: float) -> str | None:
        """The frame to send now, if a report is due (the driver calls this while the socket
        is open and offers ``sync_state``)."""
        if self._sent_at is not None:
            waited = now - self._sent_at
            changed = state.pending != self._sent
            if not (changed and waited >= self.min_gap) and not (
                state.pending > 0 and waited >= self.refresh
            ):
                return None
        self._sent, self._sent_at = state.pending, now
        return sync_state_frame(state.pending, state.oldest_pending_age)

    def next_deadline(self, state: SyncState) -> float | None:
        """When :meth:`due` may next have something (None: only a new state or socket)."""
        if self._sent_at is None:
            return None
        if state.pending != self._sent:
            return self._sent_at + self.min_gap
        if state.pending > 0:
            return self._sent_at + self.refresh
        return None
