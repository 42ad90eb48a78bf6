"""What the persister does with the media and log streams (seed 002 미디어 큐, 로그 큐).

Their blobs are already in the file store; a sink writes each upload's row (once: a repeated
captureId or batchId is a `duplicate`), and after the commit adds it to the candidate's
5-minute window in Redis (seed 002 "Redis 캐시 5분 데이터": the latest captures' metadata, the
latest log entries), which is trimmed by age as new entries arrive.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from ..store import keys
from ..store.media import MediaTable, insert_new
from ..store.persisting import BatchConnection

WINDOW_SECONDS = 300
# A window nobody writes to any more expires a while after its newest entry.
WINDOW_TTL_SECONDS = 2 * WINDOW_SECONDS


@dataclass(frozen=True, slots=True)
class Upload:
    """One capture or log batch as queued: its owner, its name and the row's columns."""

    plan_id: str
    candidate_id: str
    name: str  # captureId or batchId
    received_at: str
    late: bool
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class Applied:
    uploads: list[Upload]
    stored: list[bool]  # per upload: a new row (True) or a repeat of one (False)


class _RecordSink:
    """The shared steps; a subclass names its stream kind, columns and window entries."""

    kind: str
    table: MediaTable
    name_field: str  # the entry field holding the client's name for the upload
    name_column: str
    answer_name: str  # the ack's key for that name

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def parse(self, message_id: str, fields: dict[str, str]) -> Upload:
        upload = Upload(
            fields["plan"],
            fields["cand"],
            fields[self.name_field],
            fields["at"],
            fields.get("late") == "1",
            fields,
        )
        # Everything the row and the window need is read now: an entry missing any of it is
        # unreadable (a dead letter at once), not a batch failing at every attempt.
        self.columns(upload)
        self.window(upload)
        return upload

    def columns(self, upload: Upload) -> dict[str, Any]:
        raise NotImplementedError

    def window(self, upload: Upload) -> list[dict[str, str]]:
        """The entries the upload adds to the candidate's 5-minute window."""
        raise NotImplementedError

    def apply(self, conn: BatchConnection, uploads: list[Upload], server_time: str) -> Applied:
        rows = [
            {
                "candidate_id": upload.candidate_id,
                self.name_column: upload.name,
                "plan_id": upload.plan_id,
                **self.columns(upload),
                "received_at": upload.received_at,
                "stored_at": server_time,
                "late": int(upload.late),
            }
            for upload in uploads
        ]
        return Applied(uploads, insert_new(conn, self.table, rows))

    def acks(
        self, uploads: list[Upload], applied: Applied, server_time: str
    ) -> list[dict[str, Any]]:
        acks = []
        for upload, new in zip(uploads, applied.stored, strict=True):
            ack = {
                self.answer_name: upload.name,
                "status": "stored" if new else "duplicate",
                "sha256": upload.fields["sha"],
                "size": int(upload.fields["size"]),
                "serverTime": server_time,
            }
            if upload.late:
                ack["late"] = True
            acks.append(ack)
        return acks

    async def publish(self, applied: Applied) -> None:
        oldest = f"{int((time.time() - WINDOW_SECONDS) * 1000)}-0"
        async with self.redis.pipeline(transaction=False) as pipe:
            for upload, new in zip(applied.uploads, applied.stored, strict=True):
                if not new:
                    continue
                key = keys.recent(upload.plan_id, upload.candidate_id, self.kind)
                for entry in self.window(upload):
                    pipe.xadd(key, entry, minid=oldest, approximate=True)  # type: ignore[arg-type]
                pipe.expire(key, WINDOW_TTL_SECONDS)
            await pipe.execute()


class CaptureSink(_RecordSink):
    kind = "media"
    table = "capture"
    name_field = "cid"
    name_column = "capture_id"
    answer_name = "captureId"

    def columns(self, upload: Upload) -> dict[str, Any]:
        f = upload.fields
        return {
            "kind": f["kind"],
            "content_type": f["ctype"],
            "size": int(f["size"]),
            "sha256": f["sha"],
            "captured_at": f["cap"],
            "path": f["path"],
        }

    def window(self, upload: Upload) -> list[dict[str, str]]:
        f = upload.fields
        return [
            {
                "captureId": upload.name,
                "kind": f["kind"],
                "contentType": f["ctype"],
                "size": f["size"],
                "sha256": f["sha"],
                "capturedAt": f["cap"],
                "path": f["path"],
            }
        ]


class LogSink(_RecordSink):
    kind = "logs"
    table = "log_batch"
    name_field = "bid"
    name_column = "batch_id"
    answer_name = "batchId"

    def columns(self, upload: Upload) -> dict[str, Any]:
        f = upload.fields
        return {
            "entries": int(f["n"]),
            "size": int(f["size"]),
            "sha256": f["sha"],
            "first_at": f["first"],
            "last_at": f["last"],
            "path": f["path"],
        }

    def window(self, upload: Upload) -> list[dict[str, str]]:
        return [
            {"batchId": upload.name, "entry": json.dumps(e, ensure_ascii=False)}
            for e in json.loads(upload.fields["p"])
        ]
