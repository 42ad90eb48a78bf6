"""Handing the client's events to the front-end: listeners and async iterators."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Generic, TypeVar

__all__ = ["Publisher"]

log = logging.getLogger("examsync")

E = TypeVar("E")


class Publisher(Generic[E]):
    """Every event to every listener (called on the loop thread) and every open iterator."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[E], None]] = []
        self._queues: list[asyncio.Queue[E]] = []

    def add_listener(self, callback: Callable[[E], None]) -> Callable[[], None]:
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    async def events(self) -> AsyncIterator[E]:
        queue: asyncio.Queue[E] = asyncio.Queue()
        self._queues.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._queues.remove(queue)

    def publish(self, events: Iterable[E]) -> None:
        for event in events:
            for queue in self._queues:
                queue.put_nowait(event)
            for callback in list(self._listeners):
                try:
                    callback(event)
                except Exception:  # a front-end bug must not stop the sync
                    log.exception("examsync: event listener failed")
