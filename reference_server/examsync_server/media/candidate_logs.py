"""Receiving a batch of client log entries (seed 002 로그 데이터, ~1 MB per hour per candidate).

The body is JSON, its SHA-256 in `X-Content-SHA256`:

    {"batchId": "b-0001", "entries": [{"at": "2024-01-15T09:00:01.000Z", "level": "info",
                                        "event": "focus_lost", "data": {...}}, ...]}

`batchId` names the batch, so a retry is recognised. The raw body goes to the file store
(fsynced); the batch's metadata and its entries are queued on the plan's log stream, and the
request is answered once the persister has committed the batch's row.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from examsync.exceptions import RemoteProtocolError
from examsync.protocol import decode_json

from ..access.tokens import Principal
from ..base.digests import verified_sha256
from ..errors import ApiError, invalid_request
from ..exam.models import check_id, check_time
from ..pipeline.plan_queue import PlanQueue, all_before
from ..store.files import FileStore

MAX_LOG_BATCH_BYTES = 256 * 1024
MAX_LOG_ENTRIES = 1000
MAX_EVENT_LENGTH = 64
MAX_DATA_BYTES = 4096
LEVELS = ("debug", "info", "warning", "error")


def _entries(body: Any) -> tuple[str, list[dict[str, Any]]]:
    if not isinstance(body, dict) or set(body) != {"batchId", "entries"}:
        raise invalid_request("the body is {batchId, entries}", "")
    batch_id = body["batchId"]
    if not isinstance(batch_id, str):
        raise invalid_request("batchId must be a string", "batchId")
    check_id(batch_id, "batchId")
    entries = body["entries"]
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_LOG_ENTRIES:
        raise invalid_request(f"entries must be a list of 1 to {MAX_LOG_ENTRIES}", "entries")
    clean = []
    for i, entry in enumerate(entries):
        where = f"entries[{i}]"
        if not isinstance(entry, dict) or not {"at", "level", "event"} <= set(entry) <= {
            "at",
            "level",
            "event",
            "data",
        }:
            raise invalid_request("an entry is {at, level, event[, data]}", where)
        if not isinstance(entry["at"], str):
            raise invalid_request("at must be a time", f"{where}.at")
        if entry["level"] not in LEVELS:
            raise invalid_request("level is one of " + ", ".join(LEVELS), f"{where}.level")
        event = entry["event"]
        if not isinstance(event, str) or not 1 <= len(event) <= MAX_EVENT_LENGTH:
            raise invalid_request(f"event is a string of 1-{MAX_EVENT_LENGTH}", f"{where}.event")
        data = entry.get("data", {})
        if not isinstance(data, dict) or len(json.dumps(data)) > MAX_DATA_BYTES:
            raise invalid_request(f"data is an object of at most {MAX_DATA_BYTES} bytes", where)
        at = check_time(entry["at"], f"{where}.at")
        clean.append({"at": at, "level": entry["level"], "event": event, "data": data})
    return batch_id, clean


class LogService:
    def __init__(self, files: FileStore, queue: PlanQueue) -> None:
        self.files = files
        self.queue = queue

    async def receive(self, who: Principal, data: bytes, declared: str | None) -> bytes:
        if who.role != "candidate":
            raise ApiError(403, "candidates_only", "only candidates upload logs")
        sha256 = verified_sha256(data, declared, "log batch")
        try:
            # Strict, as saves are read: a lone surrogate is valid JSON but no Unicode, and
            # could be neither stored nor sent on to Redis.
            body = decode_json(data)
        except RemoteProtocolError:
            raise ApiError(
                400,
                "invalid_json",
                "the body is not JSON (strict: UTF-8, no NaN, no duplicate keys, no lone"
                " surrogates)",
            ) from None
        batch_id, entries = _entries(body)
        moments = sorted(e["at"] for e in entries)
        relative = Path("logs", who.plan_id, who.subject_id, f"{sha256}.json")
        await asyncio.to_thread(self.files.put, self.files.root / relative, data)
        fields = {
            "bid": batch_id,
            "n": str(len(entries)),
            "size": str(len(data)),
            "sha": sha256,
            "first": moments[0],
            "last": moments[-1],
            "path": relative.as_posix(),
            "p": json.dumps(entries, ensure_ascii=False, separators=(",", ":")),
        }
        return await self.queue.submit(who, "logs", fields, all_before(moments))
