"""The answer cache of seed 002 §4.2 in Redis, one hash per candidate and exam code.

    exam:{examId}:test:{testCode}:user:{userId}
        a:{quizCode}  {"value", "version", "updated"}        the latest committed version
        meta          {"lastSync", "version", "status", "device"}
        nav           [{"from", "to", "timestamp"}, ...]      the last NAV_KEPT moves

Written only after the SQLite commit, by a Lua script that keeps the higher version, so two
persisters finishing out of order cannot put an older answer over a newer one, and a reader
never sees a version SQLite has not committed.
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from . import keys
from .answers import SheetChange, StoredSheet

NAV_KEPT = 500
TTL_SECONDS = 7 * 24 * 3600

_UPDATE = """
local change = cjson.decode(ARGV[1])
for quiz, answer in pairs(change.answers) do
  local field = 'a:' .. quiz
  local current = redis.call('HGET', KEYS[1], field)
  if (not current) or cjson.decode(current).version < answer.version then
    redis.call('HSET', KEYS[1], field, cjson.encode(answer))
  end
end
if change.meta and change.meta.version then
  local current = redis.call('HGET', KEYS[1], 'meta')
  if (not current) or cjson.decode(current).version <= change.meta.version then
    redis.call('HSET', KEYS[1], 'meta', cjson.encode(change.meta))
  end
end
if #change.navigation > 0 then
  local nav = {}
  local current = redis.call('HGET', KEYS[1], 'nav')
  if current then nav = cjson.decode(current) end
  for _, step in ipairs(change.navigation) do table.insert(nav, step) end
  local keep = tonumber(ARGV[2])
  if #nav > keep then
    local trimmed = {}
    for i = #nav - keep + 1, #nav do table.insert(trimmed, nav[i]) end
    nav = trimmed
  end
  redis.call('HSET', KEYS[1], 'nav', cjson.encode(nav))
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


class AnswerCache:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._update = redis.register_script(_UPDATE)

    async def apply(self, changes: list[SheetChange]) -> None:
        if not changes:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for change in changes:
                body = json.dumps(
                    {
                        "answers": change.answers,
                        "meta": change.meta,
                        "navigation": change.navigation,
                    },
                    ensure_ascii=False,
                )
                await self._update(
                    keys=[keys.answer_cache(change.plan_id, change.exam_code, change.candidate_id)],
                    args=[body, NAV_KEPT, TTL_SECONDS],
                    client=pipe,
                )
            await pipe.execute()

    async def fill(
        self, plan_id: str, exam_code: str, candidate_id: str, sheet: StoredSheet
    ) -> None:
        """Refill from SQLite after a miss (the same newest-wins rule applies)."""
        change = SheetChange(
            plan_id,
            candidate_id,
            exam_code,
            dict(sheet.answers),
            dict(sheet.meta or {}),
            sheet.navigation[-NAV_KEPT:],
        )
        key = keys.answer_cache(plan_id, exam_code, candidate_id)
        await self.redis.delete(key)
        await self.apply([change])

    async def read(
        self, plan_id: str, exam_code: str, candidate_id: str
    ) -> tuple[StoredSheet, list[str]] | None:
        """The cached sheet and the fields that would not decode, or None on a miss."""
        raw: Any = await self.redis.hgetall(keys.answer_cache(plan_id, exam_code, candidate_id))
        if not raw or "meta" not in raw:
            return None
        answers: dict[str, dict[str, Any]] = {}
        broken: list[str] = []
        for name, text in raw.items():
            if not name.startswith("a:"):
                continue
            try:
                answer = json.loads(text)
                if not (
                    isinstance(answer["value"], str)
                    and isinstance(answer["version"], int)
                    and isinstance(answer["updated"], str)
                ):
                    raise TypeError
                answers[name[2:]] = {k: answer[k] for k in ("value", "version", "updated")}
            except (ValueError, KeyError, TypeError):
                broken.append(name[2:])
        try:
            meta = json.loads(raw["meta"])
            navigation = json.loads(raw.get("nav", "[]"))
        except ValueError:
            return None
        if not isinstance(meta, dict) or not isinstance(navigation, list):
            return None
        return StoredSheet(answers, meta, navigation, []), broken
