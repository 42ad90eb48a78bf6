"""Acks published while a process's listener is not subscribed (pipeline/acks.py): the request
gets its ack from the ack record once the listener is back, not after the whole timeout; while
the listener listens, nothing is recorded."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from redis.asyncio import Redis

from examsync_server.demo.sample import PLAN_ID
from examsync_server.pipeline.acks import AckHub, encode_ack
from examsync_server.store import keys

from .answer_helpers import save_body
from .conftest import eventually
from .test_answers import started
from .test_persister import queue_entry

TIMEOUT = 5.0
RECORD = keys.ack_record("receiver")


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def receiving(redis: Redis) -> AsyncIterator[AckHub]:
    """The receiving process's hub, its listener subscribed."""
    hub = AckHub(redis, "receiver", TIMEOUT)
    listening = asyncio.Event()
    listener = asyncio.create_task(hub.listen(listening))
    await asyncio.wait_for(listening.wait(), 5)
    yield hub
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)


def ack(rid: str) -> bytes:
    return encode_ack({"results": {}, "rid": rid})


async def arrive_soon(waiting: dict[str, asyncio.Future[bytes]], within: float) -> None:
    started = time.monotonic()
    for rid, future in waiting.items():
        got = json.loads(await asyncio.wait_for(future, TIMEOUT - 1))
        assert got.get("rid", rid) == rid
    assert time.monotonic() - started < within  # the reconnect, not the timeout


async def test_an_ack_published_while_the_listener_is_away_still_arrives(
    redis: Redis, receiving: AckHub
) -> None:
    persisting = AckHub(redis, "persister", TIMEOUT)
    waiting = {rid: receiving.expect(rid) for rid in ("r1", "r2")}
    # One transaction: the listener's connection is dropped, then the acks are published, to
    # nobody. No reconnect can come in between.
    async with redis.pipeline(transaction=True) as pipe:
        pipe.client_kill_filter(_type="pubsub")
        published = persisting.publish_remote({"receiver": {r: ack(r) for r in waiting}}, pipe)
        replies = await pipe.execute()
    assert replies == [1, 0]  # the listener was dropped; nobody heard
    await persisting.record_unheard(published, replies[-1:])
    await arrive_soon(waiting, 2.5)
    # The record keeps about the last timeout's worth, and not for ever.
    assert await redis.xlen(RECORD) == 1
    assert 0 < await redis.pttl(RECORD) <= 2 * TIMEOUT * 1000
    assert not await redis.exists(keys.ack_record("persister"))


async def test_a_message_recorded_just_after_the_resubscribe_is_read_again(
    redis: Redis, receiving: AckHub
) -> None:
    """Published to nobody just before the listener subscribed; its persister records it one
    round trip later, after the listener's first read of the record."""
    waiting = {"r3": receiving.expect("r3")}
    await AckHub(redis, "persister", TIMEOUT).record_unheard(
        [("receiver", b"r3 " + ack("r3"))], [0]
    )
    await arrive_soon(waiting, 2.5)


async def test_a_heard_ack_is_not_recorded(redis: Redis, receiving: AckHub) -> None:
    persisting = AckHub(redis, "persister", TIMEOUT)
    waiting = {"r4": receiving.expect("r4")}
    async with redis.pipeline(transaction=False) as pipe:
        published = persisting.publish_remote({"receiver": {"r4": ack("r4")}}, pipe)
        replies = await pipe.execute()
    assert replies == [1]
    await persisting.record_unheard(published, replies)
    await arrive_soon(waiting, 1.0)
    assert not await redis.exists(RECORD)


async def test_acks_of_requests_no_longer_waiting_are_ignored(redis: Redis) -> None:
    receiving = AckHub(redis, "receiver", TIMEOUT)
    waiting = receiving.expect("late")
    await AckHub(redis, "other", TIMEOUT).record_unheard(
        [("receiver", b"gone {}\nlate " + b'{"ok":1}')], [0]
    )
    assert await receiving.recover() == 1
    assert await waiting == b'{"ok":1}'
    assert await receiving.recover() == 0  # resolved once
    receiving.forget("late")


async def test_the_persister_keeps_an_ack_whose_process_was_away(
    client: Client, admin: dict[str, str], sync_redis: Any, redis: Redis
) -> None:
    """End to end through the running persister: a save received by another process, whose
    listener is away while the save commits, is answered once that listener is back."""
    await started(client, admin)
    elsewhere = AckHub(redis, "elsewhere", TIMEOUT)
    waiting = {"r5": elsewhere.expect("r5")}
    entry = {**queue_entry(save_body({"Q001": ("2", 1)}), rid="r5"), "node": "elsewhere"}
    stream = f"exam_queue:{PLAN_ID}:answers"
    sync_redis.xadd(stream, entry)
    await eventually(lambda: sync_redis.xlen(stream) == 0)  # committed, acknowledged, deleted
    listening = asyncio.Event()
    listener = asyncio.create_task(elsewhere.listen(listening))
    try:
        await arrive_soon(waiting, 1.0)
        assert json.loads(waiting["r5"].result())["results"]["Q001"]["status"] == "accepted"
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
