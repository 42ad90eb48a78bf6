"""A real WebSocket client of the socket server that records what it gets (seed 004 tests,
in-process and against `examsync serve`). Import it as `socket_peer`: tests/ is on the path."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from examsync.frames import auth_frame

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/120.0.6099.109 Safari/537.36"
)


@dataclass
class Peer:
    """One socket: every frame it got, kept by a reader task that answers the server's pings
    (unless told not to, as a frozen tab would not)."""

    ws: ClientConnection
    welcome: dict[str, Any]
    answer_pings: bool = True
    frames: list[dict[str, Any]] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None
    _new: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def socket_id(self) -> str:
        return str(self.welcome["socketId"])

    async def read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                self.frames.append(frame)
                self._new.set()
                if frame["type"] == "ping" and self.answer_pings:
                    await self.ws.send(json.dumps({"type": "pong", "ts": frame["ts"]}))
        except ConnectionClosed:
            pass
        finally:
            # Read off the protocol: websockets 13.0, the lowest the ranges allow, has no
            # ClientConnection.close_code yet.
            self.close_code = self.ws.protocol.close_code
            self.closed.set()
            self._new.set()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]

    async def next_of(self, kind: str, timeout: float = 2.0, after: int = 0) -> dict[str, Any]:
        """The first frame of a type beyond the first `after` of that type."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.of(kind)
            if len(found) > after:
                return found[after]
            left = deadline - time.monotonic()
            if left <= 0 or self.closed.is_set():
                raise TimeoutError(f"no {kind} frame (got {[f['type'] for f in self.frames]})")
            self._new.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), left)


@asynccontextmanager
async def peer(
    url: str,
    token: str,
    *,
    last_position: str | None = None,
    answer_pings: bool = True,
    user_agent: str | None = CHROME,
    token_in_url: bool = False,
) -> AsyncIterator[Peer]:
    """A socket to `url` with the session `token` in its auth frame (resuming after
    `last_position`), or, as SDKs before first-frame auth did, in the URL's query."""
    if token_in_url:
        query = {"token": token, **({"lastPosition": last_position} if last_position else {})}
        url = f"{url}?{urlencode(query)}"
    async with connect(url, user_agent_header=user_agent, ping_interval=None) as ws:
        if not token_in_url:
            await ws.send(auth_frame(token, last_position))
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 2))
        assert welcome["type"] == "welcome", welcome
        found = Peer(ws, welcome, answer_pings)
        reader = asyncio.create_task(found.read())
        try:
            yield found
        finally:
            reader.cancel()
            with suppress(asyncio.CancelledError):
                await reader
