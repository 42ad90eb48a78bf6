"""TabLock: one writer per candidate across tabs (Web Locks; Node's is host.mjs's stand-in)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from examsync import StoreLockedError
from examsync.pyodide.locks import TabLock


async def test_a_second_holder_is_refused_after_the_timeout() -> None:
    name = f"examsync-test:{uuid.uuid4().hex}"
    first = await TabLock.acquire(name, timeout=1)
    assert first.held
    with pytest.raises(StoreLockedError) as info:
        await TabLock.acquire(name, timeout=0.1)
    assert info.value.path == name and info.value.timeout == 0.1
    first.release()
    second = await TabLock.acquire(name, timeout=0.1)  # free again
    second.release()


async def test_a_waiting_tab_takes_over_when_the_writer_lets_go() -> None:
    name = f"examsync-test:{uuid.uuid4().hex}"
    first = await TabLock.acquire(name, timeout=1)
    waiting = asyncio.ensure_future(TabLock.acquire(name, timeout=None))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    first.release()
    second = await asyncio.wait_for(waiting, 1)
    assert second.held
    second.release()
    second.release()  # releasing twice is harmless
    assert not second.held
