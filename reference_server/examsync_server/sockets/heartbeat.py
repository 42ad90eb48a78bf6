"""The server side of the app-level heartbeat (seed 004 "핑/퐁 타임아웃"), as bookkeeping only.

The socket server calls `seen` for every frame a peer sends and `due(now)` on a short tick; it
pings what `due` says to ping (one `broadcast` for all of them) and drops what it says is dead.
Time is passed in, so the rules are tested without sleeping.

A socket is pinged `interval` seconds after it connected or after its previous ping; it is dead
when a ping has gone `timeout` seconds with nothing at all from the peer since. Any frame counts
as the answer, not only a pong: a client busy sending saves is plainly alive. So a dead peer is
found at most `interval + timeout + tick` after its last frame.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(slots=True)
class _Beat:
    last_ping: float  # when we last pinged it, or when it connected
    waiting: bool = False  # that ping is not answered yet


@dataclass
class Heartbeat(Generic[K]):
    interval: float
    timeout: float
    _beats: dict[K, _Beat] = field(default_factory=dict)

    @property
    def tick(self) -> float:
        """How often `due` should run: often enough to keep the bounds above tight."""
        return max(0.01, min(1.0, self.interval / 5, self.timeout / 5))

    def add(self, key: K, now: float) -> None:
        self._beats[key] = _Beat(last_ping=now)

    def remove(self, key: K) -> None:
        self._beats.pop(key, None)

    def seen(self, key: K) -> None:
        """A frame came from the peer: it answers any ping that is out."""
        beat = self._beats.get(key)
        if beat is not None:
            beat.waiting = False

    def due(self, now: float) -> tuple[list[K], list[K]]:
        """(sockets to ping now, sockets found dead). The dead are forgotten."""
        ping: list[K] = []
        dead: list[K] = []
        for key, beat in self._beats.items():
            if beat.waiting:
                if now - beat.last_ping >= self.timeout:
                    dead.append(key)
            elif now - beat.last_ping >= self.interval:
                beat.last_ping = now
                beat.waiting = True
                ping.append(key)
        for key in dead:
            del self._beats[key]
        return ping, dead

    def __len__(self) -> int:
        return len(self._beats)
