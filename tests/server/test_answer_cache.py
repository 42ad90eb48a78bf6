"""The Redis answer cache's rules (store/answer_cache.py), on a real Redis: the higher version
wins whatever order persisters finish in, values are stored exactly as committed, navigation
keeps its last NAV_KEPT steps."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from examsync_server.store.answer_cache import NAV_KEPT, AnswerCache
from examsync_server.store.answers import SheetChange

KEY = "exam:P1:test:E1:user:C1"
T = "2024-01-15T09:00:00.000Z"


@pytest.fixture
async def cache(redis_url: str) -> AsyncIterator[AnswerCache]:
    redis = Redis.from_url(redis_url, decode_responses=True)
    await redis.delete(KEY)
    yield AnswerCache(redis)
    await redis.aclose()


def change(
    answers: dict[str, tuple[str, int]] | None = None,
    meta_version: int | None = None,
    steps: int = 0,
) -> SheetChange:
    return SheetChange(
        "P1",
        "C1",
        "E1",
        {q: {"value": v, "version": n, "updated": T} for q, (v, n) in (answers or {}).items()},
        {} if meta_version is None else {"lastSync": T, "version": meta_version, "status": "s"},
        [{"from": "Q1", "to": "Q2", "timestamp": f"{i}"} for i in range(steps)],
    )


async def cached(cache: AnswerCache) -> dict[str, Any]:
    raw = await cache.redis.hgetall(KEY)
    return {field: json.loads(text) for field, text in raw.items()}


async def test_the_higher_version_wins_in_any_order(cache: AnswerCache) -> None:
    await cache.apply([change({"Q1": ("new", 12), "Q2": ("b", 1)}, meta_version=5)])
    # A persister finishing late with older versions, its value spelling a higher "version".
    await cache.apply([change({"Q1": ('{"version":99} \\"version\\":99', 11)}, meta_version=4)])
    stored = await cached(cache)
    assert stored["a:Q1"] == {"value": "new", "version": 12, "updated": T}
    assert stored["meta"]["version"] == 5
    await cache.apply([change({"Q1": ('"version":1 가', 13)}, meta_version=5)])
    stored = await cached(cache)
    assert stored["a:Q1"]["value"] == '"version":1 가' and stored["a:Q1"]["version"] == 13
    assert stored["a:Q2"]["version"] == 1
    assert 0 < await cache.redis.ttl(KEY)


async def test_versions_compare_as_numbers_up_to_the_largest_exact_one(cache: AnswerCache) -> None:
    await cache.apply([change({"Q1": ("a", 9)})])
    await cache.apply([change({"Q1": ("b", 10)})])  # "10" < "9" as text
    await cache.apply([change({"Q1": ("c", 2**53 - 1)})])
    await cache.apply([change({"Q1": ("d", 2**53 - 2)})])
    assert (await cached(cache))["a:Q1"]["value"] == "c"


async def test_a_corrupt_entry_is_replaced(cache: AnswerCache) -> None:
    await cache.redis.hset(KEY, "a:Q1", "{not json")
    await cache.apply([change({"Q1": ("a", 1)})])
    assert (await cached(cache))["a:Q1"]["value"] == "a"


async def test_navigation_keeps_the_last_steps(cache: AnswerCache) -> None:
    await cache.apply([change(steps=NAV_KEPT - 1)])
    await cache.apply([change(steps=3)])
    nav = (await cached(cache))["nav"]
    assert len(nav) == NAV_KEPT and nav[-1]["timestamp"] == "2" and nav[0]["timestamp"] == "2"


async def test_many_sheets_in_one_call(cache: AnswerCache) -> None:
    changes = [
        SheetChange("P1", f"C{i}", "E1", {"Q1": {"value": str(i), "version": 1, "updated": T}})
        for i in range(250)
    ]
    await cache.redis.delete(*[f"exam:P1:test:E1:user:C{i}" for i in range(250)])
    await cache.apply(changes)
    texts = [await cache.redis.hget(f"exam:P1:test:E1:user:C{i}", "a:Q1") for i in range(250)]
    assert [json.loads(t or "{}").get("value") for t in texts] == [str(i) for i in range(250)]
