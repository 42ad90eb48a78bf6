"""One Lua script called by many requests at once: one script call per key set per round trip.

Every save runs the enqueue script, and most of what a call costs this process (connection
checkout, packing, parsing, wake-ups) is paid per round trip (docs/server.md, "The hot path").
So callers queue here; while one round trip is in flight, the next callers gather for the
following one, and the calls on the same keys (the saves of one plan) become one script call:
the script takes its ARGV as groups, each its count then its arguments, and answers one reply
per group. Each caller gets its own reply or its own error, as if it had called alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

Call = tuple[list[str], list[Any], "asyncio.Future[Any]"]


class ScriptBatch:
    def __init__(self, redis: Redis, source: str) -> None:
        self.redis = redis
        self.script = redis.register_script(source)
        self._waiting: list[Call] = []
        self._sender: asyncio.Task[None] | None = None

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((keys, args, future))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send())
        return await future

    async def _send(self) -> None:
        try:
            while self._waiting:
                calls, self._waiting = self._waiting, []
                try:
                    replies = await self._run(calls)
                except Exception as exc:  # the connection failed: each caller sees why
                    replies = [exc] * len(calls)
                for (_, _, future), reply in zip(calls, replies, strict=True):
                    if future.done():  # its caller gave up (a request that went away)
                        continue
                    if isinstance(reply, Exception):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        finally:
            self._sender = None

    async def _run(self, calls: list[Call]) -> list[Any]:
        replies = await self._pipeline(calls)
        if any(isinstance(r, NoScriptError) for r in replies):
            # Redis restarted or flushed its scripts: load it once, resend what missed it.
            await self.redis.script_load(self.script.script)
            again = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
            for i, reply in zip(
                again, await self._pipeline([calls[i] for i in again]), strict=True
            ):
                replies[i] = reply
        return replies

    async def _pipeline(self, calls: list[Call]) -> list[Any]:
        by_keys: dict[tuple[str, ...], list[int]] = {}
        for i, (keys, _, _) in enumerate(calls):
            by_keys.setdefault(tuple(keys), []).append(i)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key_set, members in by_keys.items():
                grouped = [arg for i in members for arg in (len(calls[i][1]), *calls[i][1])]
                pipe.execute_command("EVALSHA", self.script.sha, len(key_set), *key_set, *grouped)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        answers: list[Any] = [None] * len(calls)
        for members, reply in zip(by_keys.values(), replies, strict=True):
            if isinstance(reply, Exception):
                for i in members:
                    answers[i] = reply
            elif len(reply) != len(members):
                error = RedisError(f"the script answered {len(reply)} of {len(members)} calls")
                for i in members:
                    answers[i] = error
            else:
                for i, answer in zip(members, reply, strict=True):
                    answers[i] = answer
        return answers
