"""Reconnect storms: a cap on the handshakes a socket-server process takes per second.

When a network blip or a restart drops thousands of sockets at once, their clients come back
together. Taking every handshake at once (token checks, a CONNECTED each, welcome and replay
frames) would stall the process for everyone, and the clients that time out would come back
again. So handshakes beyond `limit` per `window` seconds are answered at once with HTTP 503
`too_many_connections` and `Retry-After`, which the SDK honours (plus its own jitter).

A token bucket: `limit` handshakes may come at once, then `limit / window` per second. Each
refused client is booked a place at that rate after those refused before it, and its
Retry-After is when its place comes: the refused do not all come back into the next second,
but spread over as many seconds as the rate needs for them. Time is passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class HandshakeGate:
    limit: int  # handshakes taken at once, and per `window`
    window: float  # seconds
    _tokens: float = field(init=False)
    _booked: float = 0.0  # up to when the refused clients' places are booked
    _at: float | None = None

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window <= 0:
            raise ValueError(f"invalid handshake limit {self.limit} per {self.window} s")
        self._tokens = float(self.limit)

    @property
    def rate(self) -> float:
        return self.limit / self.window

    def admit(self, now: float) -> int | None:
        """None: take this handshake. Otherwise the seconds the client should wait."""
        if self._at is not None:
            passed = max(0.0, now - self._at)
            self._tokens = min(float(self.limit), self._tokens + passed * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        self._booked = max(self._booked, now) + 1.0 / self.rate
        return max(1, math.ceil(self._booked - now - 1e-9))  # not 4 for 3.0000000004
