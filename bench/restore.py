"""The restore path's Redis and SQLite reads, side by side in one run (issue 15, defect 1).

A fresh database takes `--saves` saves from each of `--candidates` simulated examinees (bench/
saves.py's ~2 KB saves, 30 questions), committed as the persister does; a private Redis holds
each candidate's answer cache, filled from SQLite as a restore fills it. Then, for random
candidates, `--restores` times each (medians and p99, µs per restore, one at a time):
1. the cache alone: what a cached restore cost before issue 15;
2. the cache and SQLite's sheet version (one primary-key read): a cached restore now;
3. the whole sheet from SQLite: a restore that does not trust the cache at all;
and each again with `--parallel` restores in flight (a room reconnecting at once), restores/s.

    python bench/restore.py [--candidates 500] [--saves 20] [--restores 2000] [--parallel 64]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchlib import bounded, machine_line, percentile, scratch_dir
from commit import batch_of
from redis.asyncio import Redis
from saves import Candidate

from examsync_server.demo.sample import EXAM_CODE, PLAN_ID
from examsync_server.process.embedded_redis import EmbeddedRedis
from examsync_server.store.answer_cache import AnswerCache
from examsync_server.store.answers import StoredAnswers, apply_saves
from examsync_server.store.persisting import BatchWriter
from examsync_server.store.sqlite import Database

SERVER_TIME = "2026-01-01T00:00:00.000Z"


async def measure(scratch: Path, args: argparse.Namespace) -> None:
    path = scratch / "restore.sqlite3"
    await (await Database.open(path)).close()  # every migration
    rng = random.Random(7)
    cands = [Candidate(f"CAND{i:05d}", "", rng) for i in range(args.candidates)]
    writer = BatchWriter(path)
    batch = 200
    for b in range(args.candidates * args.saves // batch):
        with writer.transaction() as conn:
            apply_saves(conn, batch_of(cands, batch, rng, b * batch), SERVER_TIME)
    writer.close()
    redis_server = EmbeddedRedis.start_sync(scratch / "redis", appendonly=False)
    db = await Database.open(path)
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        stored, cache = StoredAnswers(db), AnswerCache(redis)
        for cand in cands:
            sheet = await stored.sheet(cand.id, EXAM_CODE)
            await cache.fill(PLAN_ID, EXAM_CODE, cand.id, sheet)

        async def cached(cid: str) -> None:
            await cache.read(PLAN_ID, EXAM_CODE, cid)

        async def checked(cid: str) -> None:
            await cache.read(PLAN_ID, EXAM_CODE, cid)
            await stored.sheet_version(cid, EXAM_CODE)

        async def from_sqlite(cid: str) -> None:
            await stored.sheet(cid, EXAM_CODE)

        ids = [rng.choice(cands).id for _ in range(args.restores)]
        print(machine_line())
        answered = statistics.mean(
            [len((await stored.sheet(c.id, EXAM_CODE)).answers) for c in cands[:50]]
        )
        print(f"{args.candidates} candidates, {answered:.0f} answers each on average")
        for label, way in (
            ("cache alone (before)", cached),
            ("cache + SQLite sheet version (now)", checked),
            ("whole sheet from SQLite", from_sqlite),
        ):
            micros = await _timed(way, ids)
            rate = await _rate(way, ids, args.parallel)
            print(
                f"{label}: median {statistics.median(micros):.0f} µs,"
                f" p99 {percentile(micros, 0.99):.0f} µs per restore;"
                f" {rate:,.0f} restores/s with {args.parallel} in flight"
            )
    finally:
        await redis.aclose()
        await db.close()
        redis_server.stop()


async def _timed(way: Callable[[str], Awaitable[None]], ids: list[str]) -> list[float]:
    for cid in ids[:100]:  # warm up
        await way(cid)
    micros = []
    for cid in ids:
        started = time.perf_counter()
        await way(cid)
        micros.append((time.perf_counter() - started) * 1e6)
    return micros


async def _rate(way: Callable[[str], Awaitable[None]], ids: list[str], parallel: int) -> float:
    """Restores per second with `parallel` in flight."""
    started = time.perf_counter()
    await bounded(len(ids), lambda i: way(ids[i]), parallel)
    return len(ids) / (time.perf_counter() - started)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--saves", type=int, default=20)
    parser.add_argument("--restores", type=int, default=2000)
    parser.add_argument("--parallel", type=int, default=64)
    parsed = parser.parse_args()
    with scratch_dir() as scratch:
        asyncio.run(measure(scratch, parsed))
