"""Restore (seed 002 §3.2, §5.2): a candidate's committed answers for one exam, checksummed.

Redis first, but only a cached sheet at least as new as SQLite's: its `meta` version must not be
below the sheet version SQLite holds (one primary-key read), which catches a hash Redis lost
commits of (an AOF rolled back, a failover to a lagging replica; store/answer_cache.py). On a
miss, a stale hash or an entry that does not decode, SQLite (and the cache is refilled).
An answer whose stored value no longer matches its digest is left out and named in
`missing`: a partial restore says what it could not restore rather than return it corrupt.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError

from examsync.messages import (
    Device,
    NavigationStep,
    RestoreAnswer,
    RestoreMetadata,
    RestoreResponse,
)

from ..access.tokens import Principal
from ..base.clock import iso, utc_now
from ..errors import ApiError
from ..exam.catalog import Catalog
from ..store.answer_cache import AnswerCache
from ..store.answers import StoredAnswers, StoredSheet

log = logging.getLogger(__name__)


class RestoreService:
    def __init__(self, stored: StoredAnswers, cache: AnswerCache, catalog: Catalog) -> None:
        self.stored = stored
        self.cache = cache
        self.catalog = catalog

    async def restore(self, who: Principal, exam_code: str) -> dict[str, Any]:
        if who.role != "candidate":
            raise ApiError(403, "candidates_only", "only candidates restore their answers")
        catalog = await self.catalog.get(who.plan_id)
        if exam_code not in catalog.exams:
            raise ApiError(
                404, "exam_not_found", "no such exam code in this plan", {"examCode": exam_code}
            )
        sheet = await self._sheet(who.plan_id, who.subject_id, exam_code)
        meta = sheet.meta or {}
        device = meta.get("device")
        response = RestoreResponse(
            exam_id=who.plan_id,
            test_code=exam_code,
            user_id=who.subject_id,
            answers={
                q: RestoreAnswer(a["value"], a["version"], a["updated"])
                for q, a in sheet.answers.items()
            },
            metadata=RestoreMetadata(
                last_sync=meta.get("lastSync"),
                version=int(meta.get("version", 0)),
                status=str(meta.get("status", "")),
                device=Device(device["type"], device["browser"], device["os"])
                if device and device.get("type") is not None
                else None,
            ),
            navigation=tuple(
                NavigationStep(n["from"], n["to"], n["timestamp"]) for n in sheet.navigation
            ),
            missing=tuple(sheet.damaged),
            server_time=iso(utc_now()),
        )
        return response.to_wire()

    async def _sheet(self, plan_id: str, candidate_id: str, exam_code: str) -> StoredSheet:
        try:
            cached = await self.cache.read(plan_id, exam_code, candidate_id)
        except RedisError as exc:
            log.warning("restore reads SQLite: Redis unavailable (%s)", exc)
            return await self.stored.sheet(candidate_id, exam_code)
        if cached is not None and not cached[1]:
            held = (cached[0].meta or {}).get("version")
            durable = await self.stored.sheet_version(candidate_id, exam_code)
            if isinstance(held, int) and held >= durable:
                return cached[0]
            log.warning(
                "answer cache of %s/%s is behind SQLite (version %s < %d); refilling",
                candidate_id,
                exam_code,
                held,
                durable,
            )
        sheet = await self.stored.sheet(candidate_id, exam_code)
        try:
            await self.cache.fill(plan_id, exam_code, candidate_id, sheet)
        except RedisError as exc:
            log.warning("answer cache not refilled: %s", exc)
        return sheet

    async def history(
        self, plan_id: str, candidate_id: str, exam_code: str, quiz_code: str | None
    ) -> list[dict[str, Any]]:
        """Every stored edit (seed 002 §5.2 이전 버전 조회), oldest first."""
        found = await self.stored.history(plan_id, candidate_id, exam_code, quiz_code)
        return [
            {
                "quizCode": h.quiz_code,
                "value": h.value,
                "version": h.version,
                "updated": h.updated,
                "serverTime": h.server_time,
                "result": h.result,
                "late": h.late,
                "device": h.device,
            }
            for h in found
        ]
