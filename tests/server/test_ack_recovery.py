"""Acks published while a process's listener is not subscribed (pipeline/acks.py): the request
gets its ack from the ack record once the listener is back, not after the whole timeout; while
the listener listens, nothing is recorded."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from examsync_server.demo.sample import PLAN_ID
from examsync_server.pipeline.acks import AckHub, encode_ack
from examsync_server.pipeline.persister import Persister
from examsync_server.runtime import Runtime
from examsync_server.store import keys
from examsync_server.store.streams import Entry

from .answer_helpers import save_body
from .conftest import eventually
from .test_answers import started
from .test_persister import queue_entry

TIMEOUT = 5.0
RECORD = keys.ack_record("receiver")
STREAM = f"exam_queue:{PLAN_ID}:answers"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@asynccontextmanager
async def listening(hub: AckHub) -> AsyncIterator[AckHub]:
    """The hub's listener, subscribed."""
    ready = asyncio.Event()
    listener = asyncio.create_task(hub.listen(ready))
    try:
        await asyncio.wait_for(ready.wait(), 5)
        yield hub
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)


@pytest.fixture
async def receiving(redis: Redis) -> AsyncIterator[AckHub]:
    """The receiving process's hub, its listener subscribed."""
    async with listening(AckHub(redis, "receiver", TIMEOUT)) as hub:
        yield hub


@pytest.fixture
async def persister(client: Client, admin: dict[str, str], runtime: Runtime) -> Persister:
    """The app's persister, its plan started."""
    await started(client, admin)
    assert runtime.persister is not None
    return runtime.persister


def queue_from_elsewhere(sync_redis: Any, rid: str) -> None:
    """A save received by the process `elsewhere`, queued on the plan's stream."""
    entry = {**queue_entry(save_body({"Q001": ("2", 1)}), rid=rid), "node": "elsewhere"}
    sync_redis.xadd(STREAM, entry)


async def accepted_soon(future: asyncio.Future[bytes], rid: str, within: float) -> None:
    await arrive_soon({rid: future}, within)
    assert json.loads(future.result())["results"]["Q001"]["status"] == "accepted"


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
    waiting = elsewhere.expect("r5")
    queue_from_elsewhere(sync_redis, "r5")
    await eventually(lambda: sync_redis.xlen(STREAM) == 0)  # committed, acknowledged, deleted
    async with listening(elsewhere):
        await accepted_soon(waiting, "r5", 1.0)


async def test_entries_read_when_redis_went_away_are_committed_at_once(
    persister: Persister, sync_redis: Any, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis delivered a save to the persister (it is pending, ours) and the connection died
    before the reply came back: a Redis restart. The persister reads its own pending entries
    again once Redis answers, rather than leave the save to the claim of a dead consumer's
    entries (`claim_idle_ms`, 30 s): its request would have waited the whole ack timeout."""
    group = persister.group
    assert group.claim_idle_ms >= 30_000  # the claim cannot be what answers in time
    real_read = group.read
    lost: list[Entry] = []

    async def reply_lost_once(*args: Any) -> list[Entry]:
        entries = await real_read(*args)
        if entries and not lost:
            lost.extend(entries)
            raise RedisConnectionError("Connection closed by server.")
        return entries

    monkeypatch.setattr(group, "read", reply_lost_once)
    async with listening(AckHub(redis, "elsewhere", TIMEOUT)) as elsewhere:
        waiting = elsewhere.expect("r6")
        queue_from_elsewhere(sync_redis, "r6")
        await accepted_soon(waiting, "r6", 2.5)
    assert [fields["rid"] for _, _, fields in lost] == ["r6"]  # the reply was lost indeed
    assert sync_redis.xlen(STREAM) == 0


async def test_acks_of_a_round_trip_whose_reply_was_lost_still_arrive(
    persister: Persister, sync_redis: Any, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The persister's XACKs and PUBLISH went through, to nobody (the receiving process's
    listener away), and the connection died before their replies came back (Redis stopping):
    nothing reads those entries again, so the persister keeps the committed batch's acks in
    the ack records anyway, rather than leave the request to the whole ack timeout."""
    hub = persister.hub
    real_record = hub.record_unheard
    lost: list[Any] = []

    async def reply_lost_once(published: Any, heard: Any) -> None:
        if not lost:  # the round trip ran; its replies, which say nobody heard, never came
            lost.append(published)
            raise RedisConnectionError("Connection closed by server.")
        await real_record(published, heard)

    monkeypatch.setattr(hub, "record_unheard", reply_lost_once)
    elsewhere = AckHub(redis, "elsewhere", TIMEOUT)
    waiting = elsewhere.expect("r7")
    queue_from_elsewhere(sync_redis, "r7")
    await eventually(lambda: bool(lost) and sync_redis.xlen(STREAM) == 0)  # XACKed, XDELed
    async with listening(elsewhere):
        await accepted_soon(waiting, "r7", 1.5)
