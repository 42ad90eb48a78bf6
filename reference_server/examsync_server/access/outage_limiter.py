"""Failed sign-ins while Redis cannot be reached: each process limits them alone.

The login throttle keeps its counts in Redis so that every process shares them. When Redis is
away, sign-in must still work (docs/server.md, "Login attempts"), but without any limit
guesses would pass at the request rate. So each process counts the failures it sees itself,
with the same per-minute limits per account and per address; N processes let through at most
N times the limit. No lockout here: a run of failures in a row needs every process's count.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

MAX_WINDOWS = 100_000  # an attacker spraying ids grows this by one a guess, not without bound


class OutageLimiter:
    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._windows: dict[str, deque[tuple[int, str]]] = {}  # name -> (when, attempt)

    def admit(self, limits: Sequence[tuple[str, int]], now_ms: int, token: str) -> int:
        """Book an attempt under each (window name, limit), or say how many ms to wait."""
        wait = 0
        for name, limit in limits:
            window = self._windows.get(name)
            if window is None or limit <= 0:
                continue
            while window and window[0][0] <= now_ms - self.window_ms:
                window.popleft()
            if len(window) >= limit:
                frees = window[len(window) - limit][0] + self.window_ms
                wait = max(wait, frees - now_ms, 1)
        if wait:
            return wait
        if len(self._windows) >= MAX_WINDOWS:
            self._forget_before(now_ms - self.window_ms)
        for name, _ in limits:
            self._windows.setdefault(name, deque()).append((now_ms, token))
        return 0

    def give_back(self, names: Sequence[str], token: str) -> None:
        for name in names:
            window = self._windows.get(name)
            if window is not None:
                kept = [entry for entry in window if entry[1] != token]
                self._windows[name] = deque(kept)

    def _forget_before(self, oldest_ms: int) -> None:
        self._windows = {
            name: window
            for name, window in self._windows.items()
            if window and window[-1][0] > oldest_ms
        }
        if len(self._windows) >= MAX_WINDOWS:  # all recent: a flood; start afresh
            self._windows.clear()
