"""ScriptBatch on a real Redis: concurrent calls on the same keys become one script call, and
every caller still gets its own reply, or its own group's error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from examsync_server.store.script_batch import ScriptBatch

# Per group: count n, then n arguments; answers `<key>:<args joined>` per group, and counts
# its own calls in the key `calls`.
ECHO = """
redis.call('INCR', 'calls')
local replies, at = {}, 1
while at <= #ARGV do
  local n = tonumber(ARGV[at])
  if ARGV[at + 1] == 'boom' then return redis.error_reply('boom') end
  replies[#replies + 1] = KEYS[1] .. ':' .. table.concat({unpack(ARGV, at + 1, at + n)}, ',')
  at = at + n + 1
end
return replies
"""


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    await client.delete("calls")
    yield client
    await client.aclose()


async def test_each_caller_gets_its_own_reply_from_one_call_per_key_set(redis: Redis) -> None:
    batch = ScriptBatch(redis, ECHO)
    calls = [batch([f"k{i % 2}"], [f"a{i}", *(["x"] * (i % 3))]) for i in range(40)]
    replies = await asyncio.gather(*calls)
    assert replies == [f"k{i % 2}:" + ",".join([f"a{i}", *(["x"] * (i % 3))]) for i in range(40)]
    # All forty gathered before the first round trip: one script call per key set.
    assert int(await redis.get("calls") or 0) == 2


async def test_an_error_reaches_only_its_own_groups_callers(redis: Redis) -> None:
    batch = ScriptBatch(redis, ECHO)
    first = asyncio.ensure_future(batch(["k0"], ["warm"]))  # in flight while the rest gather
    good, bad, bad_too = batch(["k1"], ["ok"]), batch(["k2"], ["boom"]), batch(["k2"], ["z"])
    results = await asyncio.gather(first, good, bad, bad_too, return_exceptions=True)
    assert results[:2] == ["k0:warm", "k1:ok"]
    assert all(isinstance(r, ResponseError) for r in results[2:])


async def test_a_script_redis_forgot_is_loaded_again(redis: Redis) -> None:
    batch = ScriptBatch(redis, ECHO)
    assert await batch(["k"], ["1"]) == "k:1"
    await redis.script_flush()
    assert await asyncio.gather(batch(["k"], ["2"]), batch(["j"], ["3"])) == ["k:2", "j:3"]
