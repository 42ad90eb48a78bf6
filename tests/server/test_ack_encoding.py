"""Acknowledgements travel as the JSON the client receives (pipeline/acks.py): encoded once by the
persister, split off the channel message and spliced into a socket frame without a decode.
A request waits for its ack until its own timeout, whatever the others' timeouts."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from typing import Any

import pytest
import uvloop

from examsync.frames import save_ack_frame
from examsync_server.pipeline.acks import AckHub, encode_ack, parse_message

ACK = {"results": {"Q001": {"status": "stored", "version": 3}}, "serverTime": "…", "late": True}


def test_a_channel_message_splits_into_each_requests_ack_unchanged() -> None:
    acks = {"a1b2": encode_ack(ACK), "c3d4": encode_ack({"batchId": "줄\nbreak"})}
    message = b"\n".join(rid.encode() + b" " + ack for rid, ack in acks.items())
    assert parse_message(message) == list(acks.items())
    assert parse_message(message.decode()) == list(acks.items())  # a decoding pub/sub client
    assert json.loads(acks["c3d4"]) == {"batchId": "줄\nbreak"}  # JSON escapes the newline


def test_malformed_lines_are_skipped() -> None:
    assert parse_message(b"\nno-ack\nrid not-json\nok {}") == [("ok", b"{}")]


def test_a_save_ack_frame_is_the_ack_with_type_and_id() -> None:
    frame = json.loads(save_ack_frame("7", encode_ack(ACK)))
    assert frame == {"type": "save_ack", "id": "7", **ACK}
    assert json.loads(save_ack_frame("8", b"{}")) == {"type": "save_ack", "id": "8"}


def test_each_wait_ends_at_its_timeout_or_its_ack_on_either_loop() -> None:
    asyncio.run(waits_end_in_time())
    uvloop.run(waits_end_in_time())  # the server's loop: its timer handles differ


async def waits_end_in_time() -> None:
    hub = AckHub(redis=None, node_id="n", timeout=0.2)  # type: ignore[arg-type]  # no Redis
    started = time.monotonic()
    first, answered = hub.expect("first"), hub.expect("a")
    await asyncio.sleep(0.1)
    later = hub.expect("later")
    hub.resolve("a", b"{}")
    with pytest.raises(TimeoutError):
        await first
    assert 0.19 < time.monotonic() - started < 0.28 and not later.done()
    assert await answered == b"{}"
    with pytest.raises(TimeoutError):
        await later
    assert time.monotonic() - started >= 0.29
    for rid in ("first", "later"):
        hub.forget(rid)
    # A timeout nobody awaited (the queueing failed first) is forgotten without the loop's
    # "exception was never retrieved" report.
    reports: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: reports.append(context))
    hub.expect("unawaited")
    await asyncio.sleep(0.25)
    hub.forget("unawaited")
    gc.collect()
    assert reports == []
    # Many deadlines a hair apart, coming due while others are being set.
    hub.timeout = 0.0
    waits = []
    for i in range(300):
        waits.append(hub.expect(f"r{i}"))
        if i % 10 == 0:
            await asyncio.sleep(0.001)
    assert all(
        isinstance(e, TimeoutError) for e in await asyncio.gather(*waits, return_exceptions=True)
    )
    for i in range(300):
        hub.forget(f"r{i}")
    assert not hub._waiting and not hub._deadlines and hub._timer is None
