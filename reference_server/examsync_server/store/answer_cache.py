"""The answer cache of seed 002 §4.2 in Redis, one hash per candidate and exam code.

    exam:{examId}:test:{testCode}:user:{userId}
        a:{quizCode}  {"value", "version", "updated"}        the latest committed version
        meta          {"lastSync", "version", "status", "device"}
        nav           [{"from", "to", "timestamp"}, ...]      the last NAV_KEPT moves

Written only after the SQLite commit, by a Lua script that keeps the higher version (kept
versions only grow), and of one version the later `updated` (a later edit of the same value
moves the kept edit's time up, store/answers.py), so two persisters finishing out of order
cannot put an older answer over a newer one, and a reader never sees what SQLite has not
committed.

Redis may lose data (a wipe, a failover to an empty replica, an AOF rolled back a second), so
`meta` is the proof that the hash is whole: only a fill from SQLite creates it, and a batch
moves its version (`answer_sheet.version`) on only from exactly the version the batch started
from. A batch that finds another version (the hash missed a commit) removes `meta`. So a hash
whose meta says version v holds every commit up to v, and a restore trusts it only when SQLite's
version is not higher (answers/restore.py); otherwise it refills from SQLite.
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from ..base import fast_json
from . import keys
from .answers import SheetChange, StoredSheet

NAV_KEPT = 500
TTL_SECONDS = 7 * 24 * 3600

# KEYS: one cache hash per change. ARGV[1], ARGV[2]: navigation steps kept, TTL; ARGV[3]:
# 'whole' when the changes are whole sheets (a fill from SQLite), else 'part'. Then per key,
# in KEYS' order: the answer count n, n times (field, version, updated, answer JSON); the
# meta's version and JSON ('' '' for none) and the sheet version the batch started from ('' for
# a whole sheet); the new navigation steps as a JSON array (a whole sheet: all of them).
# Answers and meta arrive encoded and are stored as they are; a stored version and `updated`
# are read off the JSON text (`"version":` can only be a key: a quote inside a string is
# escaped), not decoded. Times are wire timestamps of one width, so they compare as text.
_UPDATE = """
local function stored_version(text)
  return tonumber(string.match(text, '"version":([-0-9.eE+]+)'))
end
local function stored_updated(text)
  return string.match(text, '"updated":"([^"]*)"') or ''
end
local function step_key(step)
  return step['timestamp'] .. '\0' .. step['from'] .. '\0' .. step['to']
end
local keep = tonumber(ARGV[1])
local whole = ARGV[3] == 'whole'
local at = 4
for _, key in ipairs(KEYS) do
  local count = tonumber(ARGV[at])
  at = at + 1
  for _ = 1, count do
    local field, version, updated, answer = ARGV[at], tonumber(ARGV[at + 1]), ARGV[at + 2],
      ARGV[at + 3]
    at = at + 4
    local current = redis.call('HGET', key, field)
    local held = current and (stored_version(current) or 0)
    if (not current) or held < version
        or (held == version and stored_updated(current) < updated) then
      redis.call('HSET', key, field, answer)
    end
  end
  local meta_version, meta, base = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  local steps = ARGV[at + 3]
  at = at + 4
  if meta_version ~= '' then
    local current = redis.call('HGET', key, 'meta')
    local held = current and (stored_version(current) or -1)
    local version = tonumber(meta_version)
    if whole then
      -- a fill: the answers above merged into whatever later commits already put here
      if (not current) or held <= version then
        redis.call('HSET', key, 'meta', meta)
      end
    elseif current then
      if held == tonumber(base) then
        redis.call('HSET', key, 'meta', meta)
      elseif held < version then
        -- the hash missed a commit (Redis lost it): no longer a whole sheet
        redis.call('HDEL', key, 'meta')
      end
    end
  end
  if steps ~= '[]' or whole then
    local nav = {}
    local current = redis.call('HGET', key, 'nav')
    if current then nav = cjson.decode(current) end
    local added = cjson.decode(steps)
    if whole then
      -- every stored step, plus those later commits put here meanwhile, in time order
      local seen = {}
      for _, step in ipairs(added) do seen[step_key(step)] = true end
      for _, step in ipairs(nav) do
        if not seen[step_key(step)] then table.insert(added, step) end
      end
      table.sort(added, function(a, b) return a['timestamp'] < b['timestamp'] end)
      nav = added
    else
      for _, step in ipairs(added) do table.insert(nav, step) end
    end
    if #nav > keep then
      local trimmed = {}
      for j = #nav - keep + 1, #nav do table.insert(trimmed, nav[j]) end
      nav = trimmed
    end
    if #nav > 0 then redis.call('HSET', key, 'nav', cjson.encode(nav)) end
  end
  redis.call('EXPIRE', key, ARGV[2])
end
return #KEYS
"""
# One script call carries this many sheets: a batch's worth in a few calls, each short enough
# not to hold Redis (single-threaded) for long.
CHANGES_PER_CALL = 100


def _arguments(change: SheetChange) -> list[str | int | bytes]:
    """One change's part of the script's ARGV."""
    args: list[str | int | bytes] = [len(change.answers)]
    for quiz_code, answer in change.answers.items():
        args += ["a:" + quiz_code, answer["version"], answer["updated"], fast_json.dumps(answer)]
    if change.meta and "version" in change.meta:
        base = "" if change.base_version is None else change.base_version
        args += [change.meta["version"], fast_json.dumps(change.meta), base]
    else:
        args += ["", "", ""]
    args.append(fast_json.dumps(change.navigation))
    return args


class AnswerCache:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def apply(self, changes: list[SheetChange], whole: bool = False) -> None:
        """Every change in one round trip (`whole`: each change is a whole sheet). EVAL rather
        than EVALSHA: Redis caches the script by its digest either way, and EVAL still works
        after a Redis restart forgot it."""
        if not changes:
            return
        scope = "whole" if whole else "part"
        async with self.redis.pipeline(transaction=False) as pipe:
            for i in range(0, len(changes), CHANGES_PER_CALL):
                part = changes[i : i + CHANGES_PER_CALL]
                cache_keys = [
                    keys.answer_cache(c.plan_id, c.exam_code, c.candidate_id) for c in part
                ]
                args = [arg for change in part for arg in _arguments(change)]
                pipe.eval(_UPDATE, len(part), *cache_keys, NAV_KEPT, TTL_SECONDS, scope, *args)
            await pipe.execute()

    async def fill(
        self, plan_id: str, exam_code: str, candidate_id: str, sheet: StoredSheet
    ) -> None:
        """Refill from SQLite after a miss or a stale hash. Merged under the same newest-wins
        rule, not written over a deleted hash: a commit that reached the hash after `sheet` was
        read must not be undone."""
        change = SheetChange(
            plan_id,
            candidate_id,
            exam_code,
            dict(sheet.answers),
            dict(sheet.meta or {}),
            sheet.navigation[-NAV_KEPT:],
        )
        await self.apply([change], whole=True)

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
