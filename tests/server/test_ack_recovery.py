"""Acks published while a process's listener is not subscribed (pipeline/acks.py): the request
gets its ack from the ack record once the listener is back, not after the whole timeout."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from examsync_server.pipeline.acks import AckHub, encode_ack
from examsync_server.store import keys

TIMEOUT = 5.0


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def test_an_ack_published_while_the_listener_is_away_still_arrives(redis: Redis) -> None:
    receiving = AckHub(redis, "receiver", TIMEOUT)
    persisting = AckHub(redis, "persister", TIMEOUT)
    listening = asyncio.Event()
    listener = asyncio.create_task(receiving.listen(listening))
    try:
        await asyncio.wait_for(listening.wait(), 5)
        waiting = {rid: receiving.expect(rid) for rid in ("r1", "r2")}
        acks = {rid: encode_ack({"results": {}, "rid": rid}) for rid in waiting}
        # One transaction: the listener's connection is dropped, then the acks are published
        # (to nobody) and recorded. No reconnect can come in between.
        async with redis.pipeline(transaction=True) as pipe:
            pipe.client_kill_filter(_type="pubsub")
            persisting.publish_remote({"receiver": acks}, pipe)
            replies = await pipe.execute()
        assert replies[0] == 1 and replies[1] == 0  # the listener was dropped; nobody heard
        started = time.monotonic()
        for rid, future in waiting.items():
            got = await asyncio.wait_for(future, TIMEOUT - 1)
            assert json.loads(got) == {"results": {}, "rid": rid}
        assert time.monotonic() - started < 2.5  # the reconnect, not the timeout
        # The record keeps only about the last timeout's worth, and not for ever.
        assert await redis.xlen(keys.ack_record("receiver")) == 1
        assert 0 < await redis.pttl(keys.ack_record("receiver")) <= 2 * TIMEOUT * 1000
        assert not await redis.exists(keys.ack_record("persister"))
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)


async def test_acks_of_requests_no_longer_waiting_are_ignored(redis: Redis) -> None:
    receiving = AckHub(redis, "receiver", TIMEOUT)
    waiting = receiving.expect("late")
    async with redis.pipeline(transaction=False) as pipe:
        AckHub(redis, "other", TIMEOUT).publish_remote(
            {"receiver": {"gone": b"{}", "late": b'{"ok":1}'}}, pipe
        )
        await pipe.execute()
    assert await receiving.recover() == 1
    assert await waiting == b'{"ok":1}'
    assert await receiving.recover() == 0  # resolved once
    receiving.forget("late")
