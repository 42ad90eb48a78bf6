"""Waiting for a wake-up or a delay, in a way every event loop the SDK runs on accepts."""

from __future__ import annotations

import asyncio


async def wait_woken(wake: asyncio.Event, delay: float | None) -> None:
    """Until ``wake`` is set, or ``delay`` seconds (None: no limit; <= 0: just yield).

    A timer that sets the event rather than ``wait_for``: Pyodide's WebLoop refuses a deadline
    that has passed by the time it is scheduled ("Can't schedule in the past"), which a
    deadline microseconds away can be; ``call_later`` with a delay > 0 cannot.
    """
    if delay is not None and delay <= 0:
        await asyncio.sleep(0)
        return
    timer = None if delay is None else asyncio.get_running_loop().call_later(delay, wake.set)
    try:
        await wake.wait()
    finally:
        if timer is not None:
            timer.cancel()
