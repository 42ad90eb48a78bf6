"""What a reconnecting socket missed: the `socket_queue` events after its `lastPosition`.

Every event from `socket_queue` carries its entry id as `position`. A client that reconnects
with `?lastPosition=<the last position it got>` is sent the events for it after that position,
then goes on live. When that cannot be done faithfully it is told to reload its state instead
(`reload_state`): the entries after its position were trimmed away, Redis no longer knows the
position (it lost its data), or more than `REPLAY_LIMIT` entries came since.
"""

from __future__ import annotations

import re
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from ..access.tokens import Principal
from ..store import keys
from .audience import Audience, event_frame

STREAM = keys.SOCKET_STREAM
REPLAY_LIMIT = 10_000  # entries looked at; a longer absence reloads instead
TOO_OLD = "position_too_old"
UNKNOWN = "position_unknown"
_STREAM_ID = re.compile(r"(\d{1,20})-(\d{1,20})")


class CannotReplay(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def position(text: str) -> tuple[int, int]:
    """A stream id as a comparable pair; ValueError when `text` is none."""
    found = _STREAM_ID.fullmatch(text)
    if found is None:
        raise ValueError(f"{text[:40]!r} is not a position (like 1700000000000-0)")
    return int(found.group(1)), int(found.group(2))


async def check(redis: Redis, last: str) -> None:
    """Raise CannotReplay unless every entry after `last` is still in the stream."""
    try:
        info: Any = await redis.xinfo_stream(STREAM)
    except ResponseError as exc:
        if "no such key" not in str(exc):
            raise
        if position(last) != (0, 0):
            raise CannotReplay(UNKNOWN) from None
        return
    mine, newest = position(last), position(info["last-generated-id"])
    if mine > newest:
        raise CannotReplay(UNKNOWN)
    if mine < position(info.get("max-deleted-entry-id", "0-0")):
        raise CannotReplay(TOO_OLD)  # an entry after it was deleted
    # Trimming is not recorded as such: if anything was ever removed, what preceded the first
    # entry left may have followed `last`. Redis 7 counts entries added; where that count does
    # not reach us (Redis 6.2, and redis-py 8.1 parses XINFO without it), our own rule tells:
    # entries are only trimmed away by MAXLEN, so a stream shorter than that lost none.
    length = info["length"]
    added = info.get("entries-added")
    removed = added > length if added is not None else length >= keys.STREAM_MAXLEN
    first = info.get("first-entry")
    if removed and mine < (position(first[0]) if first else newest):
        raise CannotReplay(TOO_OLD)


async def missed(redis: Redis, who: Principal, after: str, upto: str) -> list[dict[str, Any]]:
    """The frames for `who` among the entries in (after, upto]."""
    entries: Any = await redis.xrange(STREAM, min=f"({after}", max=upto, count=REPLAY_LIMIT + 1)
    if len(entries) > REPLAY_LIMIT:
        raise CannotReplay(TOO_OLD)
    frames = []
    for entry_id, fields in entries:
        if Audience.of(fields).includes(who):
            try:
                frames.append(event_frame(entry_id, fields))
            except ValueError:
                continue  # fan-out dropped it too
    return frames
