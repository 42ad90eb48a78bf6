"""Receiving a save (seed 002 §3.1 step 1-2): validate, queue, wait for the commit, answer.

The checks, in order: the body decodes and its checksum holds (before anything else is read);
the shape is seed 002 §4.1; the caller is the candidate the save names, in the plan it names;
`testCode` is one of the plan's exam codes, every `quizCode` is a question of that exam and
every value fits the question. Then one Lua call checks the plan is in progress and appends to
the plan's answer stream. Nothing is stored by this module: the persister stores, and this
request answers only once the persister has committed.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis

from examsync.exceptions import ChecksumMismatch, RemoteProtocolError
from examsync.messages import SavePayload
from examsync.protocol import decode_json

from .acks import AckHub
from .auth import Principal
from .catalog import Catalog
from .clock import iso, parse_iso, utc_now
from .config import Settings
from .errors import ApiError
from .store import keys
from .store.script_batch import ScriptBatch

# KEYS: plan hash, answer stream. ARGV: 'late' or '', then the entry's field/value pairs.
# Appends only while the plan is in progress (or when the caller vouches for a late save).
_ENQUEUE = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'in_progress' and ARGV[1] ~= 'late' then
  return {status or '', redis.call('HGET', KEYS[1], 'end_datetime') or ''}
end
return {'queued', redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))}
"""


@dataclass(frozen=True, slots=True)
class ValidSave:
    principal: Principal
    text: str  # the body as received: valid JSON, so queued as it is rather than re-encoded
    parsed: SavePayload


class SaveService:
    def __init__(self, redis: Redis, catalog: Catalog, hub: AckHub, settings: Settings) -> None:
        self.redis = redis
        self.catalog = catalog
        self.hub = hub
        self.settings = settings
        self._enqueue = ScriptBatch(redis, _ENQUEUE)

    async def receive(self, who: Principal, body: bytes) -> dict[str, Any]:
        """Validate and queue a save; return the save ack once it is committed."""
        save = await self.validate(who, body)
        rid = secrets.token_hex(8)
        waiting = self.hub.expect(rid)  # before queueing: the ack may beat us back
        try:
            await self._queue(save, rid)
            return await asyncio.wait_for(waiting, self.settings.ack_timeout_seconds)
        except TimeoutError:
            raise ApiError(
                503,
                "ack_timeout",
                "the save was queued but not yet committed;"
                " send it again (a repeat is recognised as a duplicate)",
            ) from None
        finally:
            self.hub.forget(rid)

    async def validate(self, who: Principal, body: bytes) -> ValidSave:
        if who.role != "candidate":
            raise ApiError(403, "candidates_only", "only candidates save answers")
        if len(body) > self.settings.max_save_bytes:
            raise ApiError(
                413,
                "payload_too_large",
                "the save is too large",
                {"limit": self.settings.max_save_bytes},
            )
        try:
            text = body.decode("utf-8")
            payload = decode_json(text)
        except UnicodeDecodeError:
            raise ApiError(400, "invalid_json", "the body is not UTF-8") from None
        except RemoteProtocolError as exc:
            raise ApiError(400, "invalid_json", str(exc)) from None
        try:
            parsed = SavePayload.from_wire(payload)
        except ChecksumMismatch as exc:
            raise ApiError(
                422,
                "checksum_mismatch",
                "the checksum does not match the payload",
                {"expected": exc.expected},
            ) from None
        except RemoteProtocolError as exc:
            raise ApiError(
                422,
                "invalid_request",
                str(exc),
                {"problems": [{"field": exc.path or "", "problem": str(exc)}]},
            ) from None
        if parsed.exam_id != who.plan_id or parsed.user_id != who.subject_id:
            raise ApiError(
                403,
                "forbidden",
                "a session may only save its own answers",
                {"examId": parsed.exam_id, "userId": parsed.user_id},
            )
        catalog = await self.catalog.get(who.plan_id)
        questions = catalog.exams.get(parsed.test_code)
        if questions is None:
            raise ApiError(
                422,
                "unknown_exam_code",
                "testCode is not an exam of this plan",
                {"testCode": parsed.test_code},
            )
        if len(parsed.answers) > self.settings.max_answers_per_save:
            raise ApiError(
                422,
                "too_many_answers",
                "too many answers in one save",
                {"limit": self.settings.max_answers_per_save},
            )
        for quiz_code, entry in parsed.answers.items():
            limit = questions.get(quiz_code)
            if limit is None:
                raise ApiError(
                    422,
                    "unknown_quiz_code",
                    "no such question in this exam",
                    {"quizCode": quiz_code},
                )
            if len(entry.value) > limit:
                raise ApiError(
                    422,
                    "value_too_long",
                    "the answer is longer than allowed",
                    {"quizCode": quiz_code, "limit": limit},
                )
        return ValidSave(who, text, parsed)

    async def _queue(self, save: ValidSave, rid: str) -> None:
        who, parsed = save.principal, save.parsed
        fields = [
            "rid",
            rid,
            "node",
            self.hub.node_id,
            "plan",
            who.plan_id,
            "cand",
            who.subject_id,
            "exam",
            parsed.test_code,
            "at",
            iso(utc_now()),
            "p",
            save.text,
        ]
        stream_keys = [keys.plan(who.plan_id), keys.plan_stream(who.plan_id, "answers")]
        status, detail = await self._enqueue(stream_keys, ["", "late", "0", *fields])
        if status == "queued":
            return
        if status == "completed" and self._late_allowed(parsed, detail):
            await self._enqueue(stream_keys, ["late", "late", "1", *fields])
            return
        if status == "completed":
            raise ApiError(409, "exam_completed", "the exam has ended", {"endedAt": detail})
        if status in ("ready", "created"):
            raise ApiError(409, "plan_not_started", "the exam has not started")
        raise ApiError(503, "redis_unavailable", "the plan's live state is missing; retry")

    def _late_allowed(self, parsed: SavePayload, ended: str) -> bool:
        """A save after the end counts if every edit in it was made before the end and it
        arrives within the grace window (a candidate whose network came back late)."""
        try:
            end = parse_iso(ended)
        except ValueError:
            return False
        if utc_now() - end > timedelta(seconds=self.settings.late_grace_seconds):
            return False
        return all(parse_iso(e.updated) <= end for e in parsed.answers.values())
