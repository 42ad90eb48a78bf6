"""Rules for background workers: plain async functions run as tasks."""

from __future__ import annotations

import asyncio


def cancel_requested() -> bool:
    """Whether the running task was asked to stop. A worker loop checks it on every round: a
    cancel that lands inside a Redis call can be lost there (redis-py with a blocking pool),
    and a loop that went on would hold up the server's shutdown."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
