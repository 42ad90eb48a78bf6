"""Exponential backoff with full jitter: pure arithmetic, the randomness is passed in."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays for retry number ``attempt`` (1, 2, ...): uniform in ``[0, min(cap, base·2^(n-1))]``.

    "Full jitter" spreads the retries of many clients that lost the server at the same moment,
    so they do not come back in step. ``min_delay`` keeps an unlucky draw of 0 from turning a
    persistent failure into a busy loop.
    """

    base: float = 1.0
    cap: float = 30.0
    factor: float = 2.0
    min_delay: float = 0.05

    def __post_init__(self) -> None:
        if not (0 < self.base <= self.cap and self.factor >= 1 and 0 <= self.min_delay):
            raise ValueError(f"invalid backoff {self!r}")

    def ceiling(self, attempt: int) -> float:
        """The largest delay retry ``attempt`` may wait."""
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, got {attempt}")
        # Compare exponents rather than compute factor**n, which overflows for long outages.
        if self.factor > 1 and (attempt - 1) > math.log(self.cap / self.base, self.factor):
            return self.cap
        return min(self.cap, self.base * self.factor ** (attempt - 1))

    def delay(self, attempt: int, rand: float) -> float:
        """The delay for retry ``attempt``, given ``rand`` drawn uniformly from ``[0, 1)``."""
        if not 0.0 <= rand < 1.0:
            raise ValueError(f"rand must be in [0, 1), got {rand!r}")
        return max(self.min_delay, rand * self.ceiling(attempt))
