"""SDK benchmark (issue 4): the local durability of `set_answer` and the outbox's throughput.

1. Local durability, CPython: `ExamClient.set_answer` returns once the edit is committed to the
   SQLite store (WAL, synchronous=FULL). Its latency p50/p99 over N edits, against the raw
   baseline measured in the same run: a bare sqlite3 INSERT + COMMIT of the same size with the
   same pragmas, in the same directory.
2. Outbox throughput: one client against a real `examsync serve` (real Redis + SQLite) edits N
   answers as fast as it can; prints edits/s until every one is acknowledged (the outbox
   coalesces edits of one answer while they wait, so acknowledged *versions* are fewer), and the
   latency from `set_answer` to the acknowledgement of that version (p50/p99), while editing at
   a steady pace.

    python bench/sdk.py [--edits 2000] [--questions 30] [--rate 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from benchlib import latency_line, start_server, started_plan, stop_server
from saves import QUESTIONS, bench_package

from examsync import AnswerAcknowledged
from examsync.cpython import ClientConfig, ExamClient
from examsync_server.demo.sample import EXAM_CODE, PLAN_ID, sample_plan

VALUE = "가나다라마바사 " * 25  # ~500 B of UTF-8, an essay-sized answer


def raw_commit_latencies(directory: Path, count: int) -> list[float]:
    """The floor: one row committed per call, WAL + synchronous=FULL, nothing else."""
    db = sqlite3.connect(directory / "raw.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT, n INTEGER)")
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        db.execute("BEGIN")
        db.execute(
            "INSERT INTO t VALUES (?, ?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v,"
            " n = excluded.n",
            (f"Q{i % 30}", f"{VALUE}{i}", i),
        )
        db.execute("COMMIT")
        latencies.append((time.perf_counter() - started) * 1000)
    db.close()
    return latencies


def config(base: str, store: Path) -> ClientConfig:
    return ClientConfig(base_url=base, plan_id=PLAN_ID, exam_code=EXAM_CODE, store_dir=store)


async def local_latencies(base: str, store: Path, count: int, questions: list[str]) -> list[float]:
    """set_answer's own latency: the client is offline-capable, so this is all local work."""
    async with ExamClient(config(base, store)) as client:
        await client.login(candidate_id="CAND202301", auth_code="AUTH1234")
        latencies = []
        for i in range(count):
            started = time.perf_counter()
            client.set_answer(questions[i % len(questions)], f"{VALUE}{i}")
            latencies.append((time.perf_counter() - started) * 1000)
        await client.flush(timeout=120)
    return latencies


async def throughput(base: str, store: Path, count: int, questions: list[str]) -> float:
    """Edits per second until the last edit is acknowledged."""
    async with ExamClient(config(base, store)) as client:
        await client.login(candidate_id="CAND202302", auth_code="AUTH1235")
        started = time.perf_counter()
        for i in range(count):
            client.set_answer(questions[i % len(questions)], f"{VALUE}{i}")
            if i % 50 == 0:
                await asyncio.sleep(0)  # let the client's loop send while we type
        if not await client.flush(timeout=300):
            raise RuntimeError("the outbox did not drain in 300 s")
        return count / (time.perf_counter() - started)


async def ack_latencies(
    base: str, store: Path, count: int, questions: list[str], rate: float
) -> list[float]:
    """set_answer → the acknowledgement of that exact version, editing at `rate` per second."""
    async with ExamClient(config(base, store)) as client:
        await client.login(candidate_id="CAND202303", auth_code="AUTH1236")
        sent: dict[tuple[str, int], float] = {}
        latencies: list[float] = []

        def on_event(event: object) -> None:
            if isinstance(event, AnswerAcknowledged):
                at = sent.pop((event.quiz_code, event.version), None)
                if at is not None:
                    latencies.append((time.perf_counter() - at) * 1000)

        client.add_listener(on_event)  # type: ignore[arg-type]
        for i in range(count):
            quiz = questions[i % len(questions)]
            version = client.set_answer(quiz, f"{VALUE}{i}")
            sent[(quiz, version)] = time.perf_counter()
            await asyncio.sleep(1 / rate)
        await client.flush(timeout=120)
        return latencies


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="examsync-bench-sdk-"))
    server, base = start_server(work / "var")
    try:
        started_plan(base, sample_plan(), bench_package()).close()
        questions = QUESTIONS[: args.questions]

        raw = raw_commit_latencies(work, args.edits)
        local = await local_latencies(base, work / "local", args.edits, questions)
        edits_per_s = await throughput(base, work / "through", args.edits, questions)
        acks = await ack_latencies(base, work / "acks", args.edits // 4, questions, args.rate)

        print(
            f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; the server"
            " (1 process, its own Redis + SQLite) on the same cores"
        )
        print(f"answers of ~{len(VALUE.encode())} B over {len(questions)} questions")
        print(latency_line(f"set_answer, durable locally ({args.edits} edits)", local))
        print(latency_line("raw sqlite3 commit, same pragmas (baseline)", raw))
        ratio = sorted(local)[len(local) // 2] / sorted(raw)[len(raw) // 2]
        print(f"  set_answer / raw commit, p50: {ratio:.2f}x")
        print(f"outbox throughput: {edits_per_s:.0f} edits/s until all acknowledged")
        print(latency_line(f"set_answer -> ack at {args.rate:g} edits/s", acks))
    finally:
        stop_server(server)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=2000)
    parser.add_argument("--questions", type=int, default=30)
    parser.add_argument("--rate", type=float, default=20)
    asyncio.run(main(parser.parse_args()))
