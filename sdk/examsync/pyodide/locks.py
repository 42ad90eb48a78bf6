"""One writer per candidate per browser: an exclusive Web Lock held by the tab that writes.

The browser counterpart of the CPython store's ``flock``: a second tab on the same candidate
waits for the lock, up to a timeout, then gets StoreLockedError instead of interleaving
versions with the first. The browser releases the lock when the holding tab closes or dies,
so a tab still waiting then takes over as the writer.

Not done yet: a follower tab that forwards its edits to the writer (BroadcastChannel) instead
of waiting; today the second tab is refused or waits.
"""

from __future__ import annotations

import logging
from functools import cache
from importlib.resources import files
from typing import Any

from ..exceptions import StorageError, StoreLockedError
from ._js import JsException, error_name, js, run_js

__all__ = ["TabLock"]

log = logging.getLogger("examsync")


@cache
def _helper() -> Any:
    return run_js(files(__package__).joinpath("locks.js").read_text(encoding="utf-8"))


def _lock_manager() -> Any:
    navigator = getattr(js, "navigator", None)
    return getattr(navigator, "locks", None) if navigator is not None else None


class TabLock:
    """An exclusive Web Lock on ``name`` for this tab, until :meth:`release`."""

    def __init__(self, name: str, release: Any) -> None:
        self.name = name
        self._release = release

    @classmethod
    async def acquire(cls, name: str, *, timeout: float | None) -> TabLock:
        """Hold ``name``, waiting up to ``timeout`` seconds (None: until it is free).

        Raises StoreLockedError when another tab holds it past the timeout. Where the browser
        has no Web Locks API (or Node), there is nothing to hold: a warning is logged and the
        lock is a no-op.
        """
        manager = _lock_manager()
        if manager is None:
            log.warning("examsync: no Web Locks API; another tab could write %s too", name)
            return cls(name, None)
        wait_ms = None if timeout is None else max(0, round(timeout * 1000))
        try:
            release = await _helper().acquire(manager, name, wait_ms)
        except JsException as exc:
            raise StorageError(
                f"Web Lock {name!r}: {error_name(exc)}: {exc}", operation="lock"
            ) from exc
        if release is None:
            raise StoreLockedError(name, holder=None, timeout=timeout or 0.0)
        return cls(name, release)

    @property
    def held(self) -> bool:
        return self._release is not None

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()
