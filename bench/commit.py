"""The persister's SQLite stage alone: one batch of saves applied and committed, as it does.

A fresh database (every migration) takes `--batches` batches of `--batch` saves from
`--candidates` simulated examinees (bench/saves.py's ~2 KB saves), each batch one
`apply_saves` transaction with synchronous=FULL and the persister's checkpoint interval. The
first tenth warms the tables up and is not counted. Printed: median apply and commit time per
batch, µs per save, the CPU per batch, and the WAL pages a batch writes.

    python bench/commit.py [--candidates 1000] [--batch 230] [--batches 120]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from pathlib import Path

from benchlib import machine_line, scratch_dir
from saves import Candidate, stream_fields

from examsync_server.answers.sink import parse_entry
from examsync_server.store.answers import QueuedSave, apply_saves
from examsync_server.store.persisting import BatchWriter
from examsync_server.store.sqlite import Database

SERVER_TIME = "2026-01-01T00:00:00.000Z"


def batch_of(cands: list[Candidate], size: int, rng: random.Random, first: int) -> list[QueuedSave]:
    """`size` saves as the persister reads them off the stream, with message ids from `first`
    (the id's milliseconds: when the server received the save, as Redis sets it)."""
    now_ms = int(time.time() * 1000)
    return [
        parse_entry(f"{now_ms}-{first + n}", stream_fields(str(n), rng.choice(cands).build()[0]))
        for n in range(size)
    ]


def wal_frames(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return (wal.stat().st_size - 32) // (4096 + 24) if wal.exists() else 0


def measure(path: Path, args: argparse.Namespace) -> None:
    asyncio.run(_migrate(path))
    rng = random.Random(7)
    cands = [Candidate(f"CAND{i:05d}", "", rng) for i in range(args.candidates)]
    writer = BatchWriter(path)  # the persister's connection, checkpoint interval included
    apply_ms, commit_ms, cpu_ms = [], [], []
    warm = args.batches // 10
    for b in range(args.batches):
        saves = batch_of(cands, args.batch, rng, b * args.batch)
        started, cpu = time.perf_counter(), time.process_time()
        with writer.transaction() as conn:
            apply_saves(conn, saves, SERVER_TIME)
            applied = time.perf_counter()
        done = time.perf_counter()  # the commit, and the checkpoint when one is due
        if b >= warm:
            apply_ms.append((applied - started) * 1000)
            commit_ms.append((done - applied) * 1000)
            cpu_ms.append((time.process_time() - cpu) * 1000)
    # Then a few batches without checkpoints, to count the pages one writes.
    writer.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    writer.conn.execute("PRAGMA wal_autocheckpoint=0")
    frames = []
    for b in range(5):
        before = wal_frames(path)
        with writer.transaction() as conn:
            apply_saves(
                conn, batch_of(cands, args.batch, rng, (args.batches + b) * args.batch), SERVER_TIME
            )
        frames.append(wal_frames(path) - before)
    writer.close()
    apply, commit = statistics.median(apply_ms), statistics.median(commit_ms)
    print(machine_line())
    print(
        f"{args.batches - warm} batches of {args.batch} saves from {args.candidates} candidates:"
        f" apply {apply:.1f} ms, commit {commit:.1f} ms (medians),"
        f" {(apply + commit) * 1000 / args.batch:.0f} µs per save;"
        f" CPU {statistics.median(cpu_ms):.1f} ms per batch;"
        f" {statistics.median(frames):.0f} WAL pages per batch"
    )


async def _migrate(path: Path) -> None:
    db = await Database.open(path)
    await db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=230)
    parser.add_argument("--batches", type=int, default=120)
    parsed = parser.parse_args()
    with scratch_dir() as scratch:
        measure(scratch / "commit.sqlite3", parsed)
