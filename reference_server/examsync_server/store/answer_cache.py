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

# KEYS: one cache hash per change. ARGV[1]: the changes as a JSON array, in KEYS' order.
_UPDATE = """
local changes = cjson.decode(ARGV[1])
local keep = tonumber(ARGV[2])
for i, change in ipairs(changes) do
  local key = KEYS[i]
  for quiz, answer in pairs(change.answers) do
    local field = 'a:' .. quiz
    local current = redis.call('HGET', key, field)
    if (not current) or cjson.decode(current).version < answer.version then
      redis.call('HSET', key, field, cjson.encode(answer))
    end
  end
  if change.meta and change.meta.version then
    local current = redis.call('HGET', key, 'meta')
    if (not current) or cjson.decode(current).version <= change.meta.version then
      redis.call('HSET', key, 'meta', cjson.encode(change.meta))
    end
  end
  if #change.navigation > 0 then
    local nav = {}
    local current = redis.call('HGET', key, 'nav')
    if current then nav = cjson.decode(current) end
    for _, step in ipairs(change.navigation) do table.insert(nav, step) end
    if #nav > keep then
      local trimmed = {}
      for j = #nav - keep + 1, #nav do table.insert(trimmed, nav[j]) end
      nav = trimmed
    end
    redis.call('HSET', key, 'nav', cjson.encode(nav))
  end
  redis.call('EXPIRE', key, ARGV[3])
end
return #changes
"""
# One script call carries this many sheets: a batch's worth in a few calls, each short enough
# not to hold Redis (single-threaded) for long.
CHANGES_PER_CALL = 100


class AnswerCache:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def apply(self, changes: list[SheetChange]) -> None:
        """Every change in one round trip. EVAL rather than EVALSHA: Redis caches the script
        by its digest either way, and EVAL still works after a Redis restart forgot it."""
        if not changes:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for i in range(0, len(changes), CHANGES_PER_CALL):
                part = changes[i : i + CHANGES_PER_CALL]
                body = json.dumps(
                    [
                        {"answers": c.answers, "meta": c.meta, "navigation": c.navigation}
                        for c in part
                    ],
                    ensure_ascii=False,
                )
                cache_keys = [
                    keys.answer_cache(c.plan_id, c.exam_code, c.candidate_id) for c in part
                ]
                pipe.eval(_UPDATE, len(part), *cache_keys, body, NAV_KEPT, TTL_SECONDS)
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
