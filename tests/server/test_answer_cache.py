"""The Redis answer cache's rules (store/answer_cache.py), on a real Redis: the higher version
wins whatever order persisters finish in, and of one version the later `updated`; values are
stored exactly as committed, navigation keeps its last NAV_KEPT steps."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from examsync_server.store.answer_cache import NAV_KEPT, AnswerCache
from examsync_server.store.answers import SheetChange, StoredSheet

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
    updated: str = T,
    base: int | None = None,
) -> SheetChange:
    """`base`: the sheet version the batch started from (None: unknown, as a stale batch)."""
    return SheetChange(
        "P1",
        "C1",
        "E1",
        {
            q: {"value": v, "version": n, "updated": updated}
            for q, (v, n) in (answers or {}).items()
        },
        {} if meta_version is None else {"lastSync": T, "version": meta_version, "status": "s"},
        [{"from": "Q1", "to": "Q2", "timestamp": f"{i}"} for i in range(steps)],
        base,
    )


async def cached(cache: AnswerCache) -> dict[str, Any]:
    raw = await cache.redis.hgetall(KEY)
    return {field: json.loads(text) for field, text in raw.items()}


async def test_the_higher_version_wins_in_any_order(cache: AnswerCache) -> None:
    # a whole sheet (a fill from SQLite): a part would not make the hash a sheet, below
    await cache.apply([change({"Q1": ("new", 12), "Q2": ("b", 1)}, meta_version=5)], whole=True)
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


async def test_of_one_version_the_later_edit_time_wins(cache: AnswerCache) -> None:
    """A later edit of the value already kept moves the kept edit's time up (store/answers.py):
    same version, later `updated`. Persisters finishing out of order cannot move it back."""
    later, latest = "2024-01-15T09:00:05.000Z", "2024-01-15T09:00:10.000Z"
    await cache.apply([change({"Q1": ("a", 2)})])
    await cache.apply([change({"Q1": ("a", 2)}, updated=latest)])
    await cache.apply([change({"Q1": ("a", 2)}, updated=later)])  # finished late: stays
    assert (await cached(cache))["a:Q1"] == {"value": "a", "version": 2, "updated": latest}
    # A value holding `"updated":"9…` is no stored time: the key's quote would be escaped.
    await cache.apply([change({"Q1": ('"updated":"9999', 3)}, updated=T)])
    await cache.apply([change({"Q1": ('"updated":"9999', 3)}, updated=later)])
    assert (await cached(cache))["a:Q1"]["updated"] == later
    await cache.apply([change({"Q1": ("b", 4)}, updated=T)])  # a higher version, whatever time
    assert (await cached(cache))["a:Q1"] == {"value": "b", "version": 4, "updated": T}


async def test_a_part_of_a_sheet_redis_lost_is_no_whole_sheet(cache: AnswerCache) -> None:
    """A batch's change to a sheet whose hash is gone (evicted, expired) holds only what that
    batch changed: it must read as a miss, so a restore fills the whole sheet from SQLite."""
    await cache.apply([change({"Q2": ("b", 2)}, meta_version=3)])
    assert await cache.read("P1", "E1", "C1") is None
    sheet = StoredSheet({"Q1": {"value": "a", "version": 1, "updated": T}}, {"version": 2}, [], [])
    await cache.fill("P1", "E1", "C1", sheet)  # merged with what the batch put there
    found = await cache.read("P1", "E1", "C1")
    assert found is not None and set(found[0].answers) == {"Q1", "Q2"}
    await cache.apply([change({"Q2": ("b", 2)}, meta_version=3, base=2)])  # a part of a whole
    found = await cache.read("P1", "E1", "C1")
    assert found is not None and set(found[0].answers) == {"Q1", "Q2"}
    assert found[0].meta is not None and found[0].meta["version"] == 3


async def test_a_batch_that_finds_a_commit_missing_unmarks_the_sheet(cache: AnswerCache) -> None:
    """Redis lost a commit (an AOF rolled back): the next batch starts from a version the hash
    does not hold, so the hash is no longer a whole sheet and restore reads SQLite."""
    sheet = StoredSheet({"Q1": {"value": "a", "version": 1, "updated": T}}, {"version": 2}, [], [])
    await cache.fill("P1", "E1", "C1", sheet)
    await cache.apply([change({"Q2": ("b", 1)}, meta_version=4, base=3)])  # version 3 is lost
    assert await cache.read("P1", "E1", "C1") is None
    assert "meta" not in await cache.redis.hgetall(KEY)
    # A batch arriving after a later one (another persister) moves nothing back.
    await cache.fill("P1", "E1", "C1", sheet)
    await cache.apply([change({"Q2": ("b", 1)}, meta_version=3, base=2)])
    await cache.apply([change({"Q1": ("a", 1)}, meta_version=2, base=2)])
    found = await cache.read("P1", "E1", "C1")
    assert found is not None and found[0].meta is not None and found[0].meta["version"] == 3


async def test_a_fill_keeps_what_later_commits_put_there(cache: AnswerCache) -> None:
    """A fill carries the sheet as SQLite held it when read; a commit that reached the hash
    since (a persister racing the restore) stays: a fill merges, it does not start over."""
    later = "2024-01-15T09:00:05.000Z"
    await cache.apply(
        [
            SheetChange(
                "P1",
                "C1",
                "E1",
                {"Q1": {"value": "new", "version": 2, "updated": later}},
                {"version": 3},
                [{"from": "Q1", "to": "Q2", "timestamp": later}],
                2,
            )
        ]
    )
    older = StoredSheet(
        {
            "Q1": {"value": "old", "version": 1, "updated": T},
            "Q2": {"value": "b", "version": 1, "updated": T},
        },
        {"version": 2},
        [{"from": "Q2", "to": "Q1", "timestamp": T}],
        [],
    )
    await cache.fill("P1", "E1", "C1", older)
    found = await cache.read("P1", "E1", "C1")
    assert found is not None
    sheet = found[0]
    assert sheet.answers["Q1"] == {"value": "new", "version": 2, "updated": later}
    assert sheet.answers["Q2"]["value"] == "b"
    assert sheet.meta is not None and sheet.meta["version"] == 2  # the fill's own version
    assert [n["timestamp"] for n in sheet.navigation] == [T, later]
    await cache.fill("P1", "E1", "C1", older)  # again: no step twice
    found = await cache.read("P1", "E1", "C1")
    assert found is not None and len(found[0].navigation) == 2


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
