"""The candidate's behaviour on this device (seed 002 §4.1 ``metadata.behavior``): totals since
the exam started here, and the navigation steps that no acknowledged save has carried yet.

They ride along with answer saves and never cause one. Kept in the store's ``meta``; each
change gives the meta entries to commit with it (the engine writes through, then keeps the new
value).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .exceptions import StorageError
from .messages import Behavior, NavigationStep

__all__ = ["Activity"]

BEHAVIOR = "behavior"  # the store's meta keys
NAVIGATION = "navigation"
_COUNTERS = ("focusTime", "editCount", "keystrokes")


@dataclass(frozen=True, slots=True)
class Activity:
    counters: Mapping[str, int]  # focusTime (ms), editCount, keystrokes: totals
    steps: tuple[tuple[int, NavigationStep], ...]  # (sequence number, step), oldest first

    @classmethod
    def load(cls, meta: Mapping[str, str]) -> Activity:
        try:
            behavior = json.loads(meta.get(BEHAVIOR, "{}"))
            raw_steps = json.loads(meta.get(NAVIGATION, "[]"))
            counters = {k: int(behavior.get(k, 0)) for k in _COUNTERS}
            steps = tuple(
                (int(seq), NavigationStep(str(a), str(b), str(ts))) for seq, a, b, ts in raw_steps
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise StorageError(f"stored behaviour is unreadable: {exc}", operation="load") from exc
        return cls(counters, steps)

    @property
    def last_step(self) -> int:
        """The sequence number of the newest step (0: none)."""
        return self.steps[-1][0] if self.steps else 0

    def behavior(self) -> Behavior:
        """What a save carries now."""
        return Behavior(
            focus_time=self.counters["focusTime"],
            edit_count=self.counters["editCount"],
            keystrokes=self.counters["keystrokes"],
            navigation=tuple(step for _, step in self.steps),
        )

    def counted(self, **more: int) -> tuple[Activity, dict[str, str]]:
        """Totals grown by ``more`` (``editCount=1``...), and the meta to commit."""
        counters = {k: v + more.get(k, 0) for k, v in self.counters.items()}
        return Activity(counters, self.steps), {BEHAVIOR: json.dumps(counters)}

    def moved(self, step: NavigationStep, keep: int) -> tuple[Activity, dict[str, str]]:
        """One more step; only the newest ``keep`` are kept."""
        steps = (*self.steps, (self.last_step + 1, step))[-keep:] if keep else ()
        return Activity(self.counters, steps), {NAVIGATION: _dump(steps)}

    def carried(self, upto: int) -> tuple[Activity, dict[str, str]]:
        """An ack took the steps up to sequence number ``upto``: they are not sent again."""
        steps = tuple(s for s in self.steps if s[0] > upto)
        if len(steps) == len(self.steps):
            return self, {}
        return Activity(self.counters, steps), {NAVIGATION: _dump(steps)}


def _dump(steps: tuple[tuple[int, NavigationStep], ...]) -> str:
    rows: list[list[Any]] = [[seq, s.from_quiz, s.to_quiz, s.timestamp] for seq, s in steps]
    return json.dumps(rows, ensure_ascii=False)
