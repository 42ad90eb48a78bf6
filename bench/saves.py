"""Durable-save benchmark (issue 3): simulated candidates saving over real HTTP.

Starts real `examsync serve` processes (one private Redis, one SQLite file with
synchronous=FULL) and drives them from this process:

1. throughput: C connections in a closed loop for T seconds, each save ~2 KB (1-3 changed
   answers of one candidate); prints acknowledged saves/s, p50/p99/max ack latency, errors;
2. latency at a fixed rate (default 1,000 saves/s, open loop): p50/p99/max;
3. the raw limit in the same run: the same payloads written straight to the Redis stream and
   persisted by one process with the same group commit (no HTTP), saves/s;
then checks that every acknowledged save is in SQLite.

    python bench/saves.py [--candidates 1000] [--seconds 10] [--concurrency 64]
                          [--rate 1000] [--processes 2]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import sqlite3
import statistics
import sys
import time
import zipfile
from contextlib import closing
from pathlib import Path
from typing import Any

from benchlib import (
    candidate_id,
    candidate_login,
    cpu_by_role,
    cpu_line,
    cpu_since,
    latency_line,
    logins,
    quiet_collector,
    run,
    scratch_dir,
    start_server,
    started_plan,
    stop_server,
)
from loadgen import HttpError, RawHttp

from examsync.edits import EditClock
from examsync.messages import AnswerEntry, Behavior, Device, Metadata, SavePayload
from examsync.protocol import canonical_json
from examsync_server.demo.sample import EXAM_CODE, PLAN_ID, sample_manifest, sample_plan

QUESTIONS = [f"B{i:03d}" for i in range(30)]


def bench_package() -> bytes:
    manifest = sample_manifest()
    manifest["exams"][0]["questions"] += [
        {"quizCode": q, "type": "text", "prompt": f"bench {q}", "maxLength": 5000}
        for q in QUESTIONS
    ]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, ensure_ascii=False))
    return buffer.getvalue()


class Candidate:
    """One simulated examinee: edits 1-3 answers between saves, versions rising."""

    def __init__(self, candidate_id: str, token: str, rng: random.Random) -> None:
        self.id = candidate_id
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.head = b""  # the request head for the client in use, set by `use()`
        self.rng = rng
        self.versions: dict[str, int] = {}
        self.clock = EditClock()  # one device: its edits' stamps never repeat (the latest wins)
        self.keystrokes = 0
        self._ready: list[tuple[bytes, dict[str, int]]] = []

    def use(self, http: RawHttp) -> None:
        self.head = http.head("/api/v1/answers", self.headers)

    def prepare(self, count: int) -> None:
        """Build the next `count` saves ahead, so the load generator spends its CPU sending."""
        self._ready += [self.build() for _ in range(count)]
        self._ready.reverse()

    def next_save(self) -> tuple[bytes, dict[str, int]]:
        return self._ready.pop() if self._ready else self.build()

    def build(self) -> tuple[bytes, dict[str, int]]:
        now = self.clock.stamp(time.time())
        changed = self.rng.sample(QUESTIONS, self.rng.randint(1, 3))
        answers = {}
        for quiz in changed:
            self.versions[quiz] = self.versions.get(quiz, 0) + 1
            # ~2 KB per save in all: the values make up most of it
            text = f"{self.id} {quiz} v{self.versions[quiz]} " + "가나다라마바사 " * 40
            # Hangul is 3 bytes in UTF-8: ~600 characters make the ~2 KB save of the issue.
            answers[quiz] = AnswerEntry(text[: 600 // len(changed)], self.versions[quiz], now)
        self.keystrokes += 10
        payload = SavePayload(
            PLAN_ID,
            EXAM_CODE,
            self.id,
            now,
            answers,
            Metadata(
                Device("PC", "Chrome 120", "Linux"),
                Behavior(1000, len(self.versions), self.keystrokes),
            ),
            "in_progress",
        )
        return canonical_json(payload.to_wire()), {q: self.versions[q] for q in changed}


class Results:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.acked: list[tuple[str, dict[str, int]]] = []
        self.sizes: list[int] = []

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def stream_fields(rid: str, body: bytes) -> dict[str, str]:
    """A save's entry on the answer stream, the fields the server queues
    (pipeline/plan_queue.py), for the persister's own parse_entry to read."""
    payload = json.loads(body)
    return {
        "rid": rid,
        "node": "bench",
        "plan": PLAN_ID,
        "cand": payload["userId"],
        "exam": payload["testCode"],
        "at": payload["timestamp"],
        "p": body.decode(),
    }


def error_code(reply: bytes) -> str:
    try:
        return str(json.loads(reply)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "?"


async def send(http: RawHttp, cand: Candidate, results: Results) -> None:
    body, sent = cand.next_save()
    started = time.perf_counter()
    try:
        status, reply = await http.post(cand.head, body)
    except HttpError as exc:
        results.error(str(exc))
        return
    if status != 200:
        results.error(f"{status} {error_code(reply)}")
        return
    results.latencies.append((time.perf_counter() - started) * 1000)
    results.acked.append((cand.id, sent))
    results.sizes.append(len(body))


async def closed_loop(
    base: str, cands: list[Candidate], seconds: float, concurrency: int
) -> tuple[Results, float]:
    """`concurrency` workers, each saving again as soon as its last save is acknowledged."""
    results = Results()
    http = RawHttp(base, concurrency)
    for cand in cands:
        cand.use(http)
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()

    async def worker(i: int) -> None:
        # Worker i owns the candidates i, i + concurrency, ...: no candidate is saved by two
        # workers at once, as no examinee saves from two places at once.
        mine = cands[i::concurrency] or [cands[i % len(cands)]]
        n = 0
        while time.perf_counter() < deadline:
            await send(http, mine[n % len(mine)], results)
            n += 1

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    http.close()
    return results, elapsed


async def open_loop(base: str, cands: list[Candidate], seconds: float, rate: float) -> Results:
    """Saves started at a fixed rate whatever the answers take (latency under a steady load)."""
    results = Results()
    http = RawHttp(base, 1024)
    for cand in cands:
        cand.use(http)
    tasks = []
    start = time.perf_counter()
    for n in range(int(seconds * rate)):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(http, cands[n % len(cands)], results)))
    await asyncio.gather(*tasks)
    http.close()
    return results


async def raw_limit(redis_url: str, sqlite_path: Path, cands: list[Candidate], count: int) -> float:
    """The pipeline without HTTP: XADD the same payloads, then persist them in batches with the
    server's own group commit, cache update and XACK, in this one process."""
    from redis.asyncio import Redis

    from examsync_server.answers.sink import parse_entry
    from examsync_server.store import keys
    from examsync_server.store.answer_cache import AnswerCache
    from examsync_server.store.answers import apply_batch
    from examsync_server.store.sqlite import connect_sync

    redis = Redis.from_url(redis_url, decode_responses=True)
    stream = f"bench-raw:{os.getpid()}"
    await redis.xgroup_create(stream, "raw", id="0", mkstream=True)
    entries = [stream_fields(str(n), cands[n % len(cands)].next_save()[0]) for n in range(count)]
    conn = connect_sync(sqlite_path)
    cache = AnswerCache(redis)
    started = time.perf_counter()
    async with redis.pipeline(transaction=False) as pipe:
        for fields in entries:
            pipe.xadd(stream, fields)  # type: ignore[arg-type]  # (its dict type is invariant)
        await pipe.execute()
    done = 0
    while done < count:
        reply: Any = await redis.xreadgroup("raw", "c", {stream: ">"}, count=500)
        saves = [parse_entry(mid, fields) for mid, fields in reply[0][1]]
        result = await asyncio.to_thread(apply_batch, conn, saves, saves[-1].received_at)
        await cache.apply(result.sheets)
        await redis.xack(stream, "raw", *[s.message_id for s in saves])
        await redis.xdel(stream, *[s.message_id for s in saves])
        done += len(saves)
    elapsed = time.perf_counter() - started
    await redis.delete(stream, *{keys.answer_cache(PLAN_ID, EXAM_CODE, c.id) for c in cands})
    conn.close()
    await redis.aclose()
    return count / elapsed


def lost_answers(sqlite_path: Path, *runs: Results) -> int:
    """Acknowledged answers that SQLite does not hold at (at least) the acknowledged version."""
    with closing(sqlite3.connect(sqlite_path)) as db:
        stored = {
            (r[0], r[1]): r[2]
            for r in db.execute("SELECT candidate_id, quiz_code, version FROM answer")
        }
    return sum(
        1
        for results in runs
        for who, sent in results.acked
        for quiz, version in sent.items()
        if stored.get((who, quiz), 0) < version
    )


async def main(args: argparse.Namespace) -> None:
    with scratch_dir() as scratch:
        await measure(scratch / "var", args)


async def measure(data: Path, args: argparse.Namespace) -> None:
    data.mkdir(parents=True)
    server, base = start_server(
        data, "--http-server", args.http_server, "--processes", str(args.processes)
    )
    try:
        started_plan(base, sample_plan(candidates=args.candidates), bench_package()).close()
        rng = random.Random(7)
        sessions = await logins(base, [candidate_login(i) for i in range(args.candidates)])
        cands = [
            Candidate(candidate_id(i), session["token"], rng) for i, session in enumerate(sessions)
        ]

        per_candidate = int((args.seconds * (4000 + args.rate) + 8000) / args.candidates) + 1
        for cand in cands:
            cand.prepare(per_candidate)
        await closed_loop(base, cands, 2, args.concurrency)  # warm-up
        with quiet_collector():
            through, elapsed = await closed_loop(base, cands, args.seconds, args.concurrency)
        cpu_before = cpu_by_role(server.pid)
        with quiet_collector():
            steady = await open_loop(base, cands, args.seconds, args.rate)
        cpu_used = cpu_since(server.pid, cpu_before)
        raw = await raw_limit(
            f"unix://{data / 'redis' / 'redis.sock'}", data / "examsync.sqlite3", cands, 20_000
        )

        lost = lost_answers(data / "examsync.sqlite3", through, steady)
        saves_per_s = len(through.latencies) / elapsed
        print(
            f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]};"
            f" {args.processes} server process(es), load generator on the same cores"
        )
        print(
            f"candidates {args.candidates}, saves of {statistics.mean(through.sizes):.0f} B"
            f" on average, concurrency {args.concurrency}"
        )
        print(
            f"throughput: {saves_per_s:.0f} durable saves/s over {elapsed:.1f} s,"
            f" errors {through.errors or 0}"
        )
        print(latency_line("  ack latency (closed loop)", through.latencies))
        achieved = len(steady.latencies) / args.seconds
        print(
            f"fixed rate {args.rate:.0f}/s: achieved {achieved:.0f}/s, errors {steady.errors or 0}"
        )
        print(latency_line("  ack latency (open loop)", steady.latencies))
        print(cpu_line("  server CPU per save at that rate", cpu_used, len(steady.latencies)))
        print(f"raw limit (stream + group commit + cache, no HTTP): {raw:.0f} saves/s")
        print(f"ratio HTTP / raw: {saves_per_s / raw:.2f}")
        print(f"acknowledged answers missing from SQLite: {lost}")
    finally:
        stop_server(server)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--http-server", choices=("hypercorn", "uvicorn"), default="uvicorn")
    run(main(parser.parse_args()))
