"""What a signed-in client shows of this device's answers: read from the engine, for pages.

A part of :class:`~examsync.driver.client.BaseExamClient`, kept apart so the client's module
holds the syncing and this one the reading.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping

from ..devices import ActiveDevice
from ..engine import Engine
from ..events import AnswerOverridden, SyncState
from ..messages import Receipt
from ..storage import LocalAnswer

__all__ = ["AnswerView"]


class AnswerView(ABC):
    _clock: Callable[[], float]

    @abstractmethod
    def _require_engine(self) -> Engine:
        """The engine of the signed-in candidate (ExamSyncError before login)."""

    @property
    def device_id(self) -> str:
        """This device's id (made once per local store; sent with every save)."""
        return self._require_engine().device_id

    @property
    def answers(self) -> Mapping[str, LocalAnswer]:
        return self._require_engine().answers

    @property
    def receipts(self) -> Mapping[str, Receipt]:
        """The latest verified receipt per question (the server's signed acknowledgement)."""
        return self._require_engine().receipts

    @property
    def sync_state(self) -> SyncState:
        return self._require_engine().sync_state(self._clock())

    @property
    def overridden(self) -> Mapping[str, AnswerOverridden]:
        """Per question, this device's edit the server did not keep and what it keeps instead
        (``SyncState.overridden``), until dismissed or edited again."""
        return self._require_engine().overridden

    @property
    def active_device(self) -> ActiveDevice | None:
        """The candidate's active device as last heard (None: nothing heard yet)."""
        return self._require_engine().active_device

    @property
    def replaced(self) -> bool:
        """Another device took the exam over (``single``): this device's edits from then on
        wait here until :meth:`take_over`."""
        return self._require_engine().replaced

    def dismiss_conflict(self, quiz_code: str) -> bool:
        """The page has shown that ``quiz_code`` was overridden (``SyncState.overridden``,
        ``AnswerOverridden``): forget the conflict. Returns whether there was one."""
        return self._require_engine().dismiss_conflict(quiz_code, self._clock())
