"""One device of a chaos run, in a process of its own: it signs in, types, and writes down
everything it is told (history.py) as JSON lines in its history file.

    python tests/chaos/client.py '<json settings>'

The settings: ``client`` (its name), ``base`` (the HTTP URL, through its own proxy),
``store`` (its directory), ``candidate``, ``auth``, ``edits``, ``pace`` (mean seconds between
edits), ``seed``, ``history`` (the file), ``restore_at_end`` (a candidate with two devices:
after both flushed, take the other's edits before writing the final state).

It talks to the harness in JSON lines: it prints ``{"step": "ready"}`` once signed in and
waits for ``go``; types at least ``edits`` edits and on until told ``stop`` (the faults
are over), then prints ``edited``; on ``flush`` flushes and prints
``flushed``; on ``final`` writes its final state and prints ``done``, then exits.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from examsync import (
    AnswerAcknowledged,
    AnswerOverridden,
    Backoff,
    ConnectionConfig,
    DeliveryFailure,
    SyncState,
    SyncStatus,
)
from examsync.cpython import ClientConfig, ClientEvent, ExamClient

PLAN_ID, EXAM_CODE = "PLAN202401", "EXAM202401"
# The sample package's questions; Q001-Q003 take at most 4 characters.
SHORT, LONG = ("Q001", "Q002", "Q003"), ("Q004", "Q005")


def config(settings: dict[str, Any]) -> ClientConfig:
    return ClientConfig(
        base_url=settings["base"],
        plan_id=PLAN_ID,
        exam_code=EXAM_CODE,
        store_dir=Path(settings["store"]),
        connection=ConnectionConfig(
            ping_interval=1.0,
            ping_timeout=2.0,
            max_attempts=3,
            backoff=Backoff(base=0.1, cap=1.0, min_delay=0.05),
        ),
        request_timeout=12.0,  # above the server's 10 s ack timeout
        open_timeout=2.0,
        lock_timeout=2.0,
    )


def value(client: str, quiz: str, n: int) -> str:
    """A value no other edit of the run types: the checker tells edits apart by value."""
    if quiz in SHORT:
        return f"{client[-1]}{n % 1000:03d}"  # unique within 1,000 edits of a device
    return f"{client}의 {n}번째 답안"


class Recorder:
    """Writes each event the device is told as a history line (history.py)."""

    def __init__(self, client: ExamClient, name: str, candidate: str, out: TextIO) -> None:
        self.client, self.name, self.candidate, self.out = client, name, candidate, out
        client.add_listener(self.seen)

    def write(self, kind: str, **fields: Any) -> None:
        line = {"kind": kind, "client": self.name, "candidate": self.candidate, **fields}
        self.out.write(json.dumps({**line, "t": time.time()}, ensure_ascii=False) + "\n")
        self.out.flush()

    def seen(self, event: ClientEvent) -> None:
        if isinstance(event, AnswerAcknowledged):
            digest = event.receipt.payload.value_sha256 if event.receipt else ""
            self.write(
                "ack",
                quiz=event.quiz_code,
                status=event.status.value,
                version=event.version,
                digest=digest,
            )
        elif isinstance(event, AnswerOverridden):
            self.write(
                "overridden",
                quiz=event.quiz_code,
                lost_value=event.lost_value,
                value=event.value,
                version=event.version,
            )
        elif isinstance(event, DeliveryFailure):
            self.write("failure", error=repr(event.error)[:300], attempt=event.attempt)
        elif isinstance(event, SyncState) and event.status is SyncStatus.SYNCED:
            # The event may trail the engine; record only what the device says right now.
            if self.client.sync_state.status is SyncStatus.SYNCED:
                held = {q: a.value for q, a in self.client.answers.items()}
                self.write("synced", held=held)


def say(step: str, **fields: Any) -> None:
    print(json.dumps({"step": step, **fields}), flush=True)


async def command() -> str:
    line: str = await asyncio.to_thread(sys.stdin.readline)
    return line.strip()


async def run(settings: dict[str, Any]) -> None:
    name, rng = settings["client"], random.Random(settings["seed"])
    with Path(settings["history"]).open("a", encoding="utf-8") as out:
        async with ExamClient(config(settings)) as client:
            recorder = Recorder(client, name, settings["candidate"], out)
            await client.login(candidate_id=settings["candidate"], auth_code=settings["auth"])
            say("ready", device=client.device_id)
            if await command() != "go":
                raise SystemExit("expected go")
            told_to_stop = asyncio.create_task(command())
            n = 0
            while n < settings["edits"] or not told_to_stop.done():
                quiz = rng.choice(SHORT + LONG)
                typed = value(name, quiz, n)
                version = client.set_answer(quiz, typed)  # on the device's disk when it returns
                recorder.write("edit", quiz=quiz, value=typed, version=version)
                n += 1
                await asyncio.sleep(settings["pace"] * rng.uniform(0.5, 1.5))
            if await told_to_stop != "stop":
                raise SystemExit("expected stop")
            say("edited", edits=n)
            if await command() != "flush":
                raise SystemExit("expected flush")
            # A replaced device's edits wait for a takeover that never comes: no long wait.
            replaced = client.sync_state.status is SyncStatus.REPLACED
            flushed = await client.flush(timeout=5 if replaced else 90)
            say("flushed", ok=flushed, state=str(client.sync_state))
            if await command() != "final":
                raise SystemExit("expected final")
            replaced = client.sync_state.status is SyncStatus.REPLACED
            if settings["restore_at_end"] and not replaced:
                await client.restore()
            answers = {q: [a.value, a.version] for q, a in client.answers.items()}
            recorder.write("final", answers=answers, replaced=replaced)
            say("done", pending=client.sync_state.pending)


if __name__ == "__main__":
    asyncio.run(run(json.loads(sys.argv[1])))
