"""Failed sign-ins while Redis cannot be reached: each process limits them alone.

The login throttle keeps its counts in Redis so that every process shares them. When Redis is
away, sign-in must still work (docs/server.md, "Login attempts"), but without any limit
guesses would pass at the request rate. So each process counts the failures it sees itself,
with the same per-minute limits per account and per address and the same bound on attempts
open at once; N processes let through at most N times the limit. No lockout here: a run of
failures in a row needs every process's count.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

MAX_WINDOWS = 100_000  # an attacker spraying ids grows this by one a guess, not without bound


class OutageLimiter:
    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._windows: dict[str, deque[int]] = {}  # name -> when each failure came
        self._open: dict[str, set[str]] = {}  # name -> attempts being checked now

    def admit(self, limits: Sequence[tuple[str, int, int]], now_ms: int, token: str) -> int | None:
        """Open an attempt under each (name, failure limit, open bound): 0, or how many ms to
        wait (the failures of the last minute reached a limit), or None (too many open)."""
        wait = 0
        for name, limit, _ in limits:
            window = self._windows.get(name)
            if window is None or limit <= 0:
                continue
            while window and window[0] <= now_ms - self.window_ms:
                window.popleft()
            if len(window) >= limit:
                wait = max(wait, window[len(window) - limit] + self.window_ms - now_ms, 1)
        if wait:
            return wait
        if any(len(self._open.get(name, ())) >= bound for name, _, bound in limits):
            return None
        for name, _, _ in limits:
            self._open.setdefault(name, set()).add(token)
        return 0

    def close(self, names: Sequence[str], token: str, failed: Sequence[str], now_ms: int) -> None:
        """Close the attempt under `names`; count it as a failure under `failed`."""
        for name in names:
            opened = self._open.get(name)
            if opened is not None:
                opened.discard(token)
                if not opened:
                    del self._open[name]
        if failed and len(self._windows) >= MAX_WINDOWS:
            self._forget_before(now_ms - self.window_ms)
        for name in failed:
            self._windows.setdefault(name, deque()).append(now_ms)

    def _forget_before(self, oldest_ms: int) -> None:
        self._windows = {
            name: window
            for name, window in self._windows.items()
            if window and window[-1] > oldest_ms
        }
        if len(self._windows) >= MAX_WINDOWS:  # all recent: a flood; start afresh
            self._windows.clear()
