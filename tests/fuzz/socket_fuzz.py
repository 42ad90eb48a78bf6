"""Throwing generated frames at a real socket server, and what it may answer.

`connect` is the one place that knows how a client is admitted (today `?token=` on the URL;
a first-frame authentication would change only it). `exchange` sends frames on one socket and
checks every answer against docs/protocol.md: server frames of documented types only; `error`
frames with a documented code (a save's with its `id` and a status the save route documents,
never 5xx); every save with a usable id answered; a closed socket only with a documented code
and only for a frame over the size limit; no silence (a ping after the frames is answered).
`fuzz_frames` runs Hypothesis over that as the candidate and the supervisor; run on its own
(`nox -s fuzz`, `PYTHONPATH=tests python -m fuzz.socket_fuzz --examples 2000`) it starts a
server and prints the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from examsync_server.sockets.saves import ENVELOPE_BYTES
from examsync_server.sockets.server import MAX_FRAME_BYTES

from .frame_strategies import Wire, client_frames, deterministic, last_positions, save_payload
from .target import Target, running_target

SERVER_FRAMES = {
    "welcome", "ping", "pong", "exam_end", "stage_changed", "device_active",
    "examinee_connected", "examinee_disconnected", "examinee_lost", "alert", "resumed",
    "reload_state", "save_ack", "error",
}  # fmt: skip
# Error codes of frames that are not saves (docs/protocol.md, "Socket frames").
FRAME_ERRORS = {"invalid_json", "invalid_message", "unknown_type", "candidates_only"}
# ... and of a resume from a `lastPosition` that is no position.
RESUME_ERRORS = {"invalid_position"}
TOO_BIG = 1009  # a frame over the limit
PRINCIPALS = ("candidate", "supervisor")
# The fuzzed server takes saves of up to 16 KiB, so the frame limit is the socket's own 64 KiB
# floor and frames over it are cheap to generate.
MAX_SAVE_BYTES = 16_384
LIMIT = max(MAX_FRAME_BYTES, MAX_SAVE_BYTES + ENVELOPE_BYTES)
SERVER_OPTIONS = ("--max-save-bytes", str(MAX_SAVE_BYTES))
# Longer than a save may wait for its commit (the ack timeout, 10 s by default).
ANSWER_TIMEOUT = 12.0


@asynccontextmanager
async def connect(
    socket_url: str, token: str, last_position: str | None = None
) -> AsyncIterator[ClientConnection]:
    """An admitted socket, its welcome read; resuming from `last_position` when given."""
    query = {"token": token} | ({} if last_position is None else {"lastPosition": last_position})
    async with ws_connect(
        f"{socket_url}?{urlencode(query)}", ping_interval=None, max_size=None, open_timeout=10
    ) as ws:
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert welcome["type"] == "welcome", welcome
        yield ws


@dataclass
class Exchange:
    """What one socket was sent and answered."""

    sent: list[Wire]
    frames: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    problems: list[str] = field(default_factory=list)


async def exchange(
    ws: ClientConnection, wires: list[Wire], limit: int, save_statuses: frozenset[int]
) -> Exchange:
    """Send `wires`, then a ping; read until the ping's pong and every save's answer came."""
    result = Exchange(wires)
    oversize = False
    try:
        for wire in wires:
            oversize = oversize or wire.size > limit
            await ws.send(wire.data)
        probe = int(time.time() * 1000)
        await ws.send(json.dumps({"type": "ping", "ts": probe}))
    except ConnectionClosed:
        pass
    awaited = {w.save_id for w in wires if w.save_id is not None and w.size <= limit}
    ponged = False
    deadline = time.monotonic() + ANSWER_TIMEOUT
    try:
        while not ponged or awaited:
            left = deadline - time.monotonic()
            if left <= 0:
                result.problems.append(
                    f"silence: pong {'came' if ponged else 'missing'}, saves unanswered {awaited}"
                )
                break
            frame = json.loads(await asyncio.wait_for(ws.recv(), left))
            result.frames.append(frame)
            ponged = ponged or (frame.get("type") == "pong" and frame.get("ts") == probe)
            if frame.get("type") in ("save_ack", "error"):
                awaited.discard(frame.get("id"))
            result.problems += _judge(frame, save_statuses)
    except ConnectionClosed:
        result.close_code = ws.protocol.close_code
        if not (oversize and result.close_code == TOO_BIG):
            result.problems.append(
                f"closed with {result.close_code} ({ws.protocol.close_reason!r}),"
                f" {'after' if oversize else 'without'} a frame over {limit} bytes"
            )
    except TimeoutError:
        result.problems.append(f"silence: pong {'came' if ponged else 'missing'}, saves {awaited}")
    return result


def _judge(frame: Any, save_statuses: frozenset[int]) -> list[str]:
    if not isinstance(frame, dict) or frame.get("type") not in SERVER_FRAMES:
        return [f"undocumented frame {str(frame)[:200]}"]
    if frame["type"] != "error":
        return []
    error = frame.get("error")
    if not (
        isinstance(error, dict)
        and isinstance(error.get("code"), str)
        and isinstance(error.get("message"), str)
        and isinstance(error.get("details"), dict)
    ):
        return [f"malformed error frame {str(frame)[:200]}"]
    if "id" in frame:  # a save's refusal: what POST /api/v1/answers would have answered
        status = frame.get("status")
        if status not in save_statuses or status >= 500:
            return [f"save refused with status {status}: {str(frame)[:300]}"]
        return []
    if error["code"] not in FRAME_ERRORS | RESUME_ERRORS:
        return [f"undocumented error code {error['code']!r}: {str(frame)[:300]}"]
    return []


@dataclass
class FrameFigures:
    examples: Counter[str] = field(default_factory=Counter)  # by principal
    sent: int = 0
    answers: Counter[str] = field(default_factory=Counter)  # frame type, or error:<code>
    closes: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, principal: str, result: Exchange) -> None:
        self.examples[principal] += 1
        self.sent += len(result.sent) + 1  # and the probe
        for frame in result.frames:
            kind = str(frame.get("type"))
            if kind == "error" and isinstance(frame.get("error"), dict):
                kind = f"error:{frame['error'].get('code')}"
            self.answers[kind] += 1
        if result.close_code is not None:
            self.closes[result.close_code] += 1
        if result.problems:
            sent = [w.data[:200] for w in result.sent]
            self.problems.append(f"as {principal}, sent {sent!r}: {result.problems}")

    def report(self) -> str:
        examples = ", ".join(f"{p}: {n}" for p, n in sorted(self.examples.items()))
        answers = ", ".join(f"{k}: {n}" for k, n in sorted(self.answers.items()))
        closes = ", ".join(f"{k}: {n}" for k, n in sorted(self.closes.items())) or "none"
        lines = [
            f"{sum(self.examples.values())} sockets ({examples}), {self.sent} frames sent"
            f" in {self.seconds:.0f} s",
            f"answers: {answers}",
            f"closes by code: {closes}",
            f"problems (undocumented answer, crash, hang): {len(self.problems)}",
            *(f"  {p}" for p in self.problems[:20]),
        ]
        return "\n".join(lines)


@functools.cache
def save_statuses(base: str) -> frozenset[int]:
    """The statuses POST /api/v1/answers documents, and the socket's own 429 too_many_saves."""
    document = httpx.get(base + "/api/v1/openapi.json", timeout=10).json()
    documented = document["paths"]["/api/v1/answers"]["post"]["responses"]
    return frozenset(int(s) for s in documented) | {429}


def send(
    target: Target, principal: str, wires: list[Wire], last_position: str | None = None
) -> Exchange:
    """`wires` on a new socket of `principal`'s."""

    async def run() -> Exchange:
        async with connect(target.socket_url, target.tokens[principal], last_position) as ws:
            return await exchange(ws, wires, LIMIT, save_statuses(target.base))

    return asyncio.run(run())


def fuzz_frames(target: Target, examples: int, seed_value: int = 15) -> FrameFigures:
    """`examples` sockets, each sent one to four generated frames; stops at a dead server."""
    figures = FrameFigures()
    started = time.monotonic()

    @deterministic(examples, seed_value)
    @given(
        principal=st.sampled_from(PRINCIPALS),
        wires=st.lists(client_frames(LIMIT), min_size=1, max_size=4),
        last_position=last_positions,
    )
    def one(principal: str, wires: list[Wire], last_position: str | None) -> None:
        figures.add(principal, send(target, principal, wires, last_position))
        assert target.server.process.poll() is None, "the server process died"

    one()
    figures.seconds = time.monotonic() - started
    return figures


def valid_client_saves(target: Target) -> Exchange:
    """A well-behaved candidate's save on a new socket."""
    payload = save_payload({"Q001": ("after the fuzzing", 1_000_001)})
    wire = Wire(json.dumps({"type": "save", "id": "valid", "payload": payload}), "valid")
    return send(target, "candidate", [wire])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="socket frames against a real server")
    parser.add_argument("--examples", type=int, default=1000, help="sockets, 1-4 frames each")
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        with running_target(Path(tmp) / "data", *SERVER_OPTIONS) as target:
            figures = fuzz_frames(target, args.examples, args.seed)
            after = valid_client_saves(target)
            alive = target.alive()
    print(figures.report())
    acked = any(f["type"] == "save_ack" for f in after.frames) and not after.problems
    print(f"server alive afterwards: {alive}; a valid client's save acked: {acked}")
    return 0 if alive and acked and not figures.problems else 1


if __name__ == "__main__":
    sys.exit(main())
