"""Receiving a capture (seed 002 미디어: webcam, screen, mobile camera, audio).

A capture is the raw image or audio, with its kind, the client's `captureId` (a retry sends
the same id and is recognised) and `capturedAt` in the query, its SHA-256 in
`X-Content-SHA256`. The checks: a candidate's session; a known kind the plan allows (webcam
needs `requires_camera`, mobile `allows_mobile_camera`); a size within the kind's limit; the
declared digest; content that is what its Content-Type says (magic bytes); no more often than
half the kind's interval (the plan's `camera_capture_interval` for the webcam). Then the blob is
written to the file store (fsynced, content-addressed), the metadata queued on the plan's media
stream, and the request answered once the persister has committed the row.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from ..access.tokens import Principal
from ..base.digests import verified_sha256
from ..errors import ApiError
from ..exam.catalog import Catalog, PlanCatalog
from ..exam.models import check_id, check_time
from ..pipeline.plan_queue import PlanQueue, all_before
from ..store import keys
from ..store.files import FileStore


def _riff(form: bytes) -> Callable[[bytes], bool]:
    return lambda data: data[:4] == b"RIFF" and data[8:12] == form


# Content type -> how its first bytes look: a capture must be what it says it is.
_SIGNATURES: dict[str, Callable[[bytes], bool]] = {
    "image/jpeg": lambda data: data[:3] == b"\xff\xd8\xff",
    "image/png": lambda data: data[:8] == b"\x89PNG\r\n\x1a\n",
    "image/webp": _riff(b"WEBP"),
    "audio/webm": lambda data: data[:4] == b"\x1a\x45\xdf\xa3",
    "audio/ogg": lambda data: data[:4] == b"OggS",
    "audio/wav": _riff(b"WAVE"),
    "audio/mp4": lambda data: data[4:8] == b"ftyp",
}
_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "audio/webm": "webm",
    "audio/ogg": "ogg",
    "audio/wav": "wav",
    "audio/mp4": "m4a",
}
IMAGES = ("image/jpeg", "image/png", "image/webp")
AUDIO = ("audio/webm", "audio/ogg", "audio/wav", "audio/mp4")


@dataclass(frozen=True, slots=True)
class KindRule:
    every_seconds: float  # seed 002's rate: one capture per this many seconds
    typical_bytes: int  # seed 002's size, for reference; the limit allows headroom
    max_bytes: int
    types: tuple[str, ...]
    flag: str | None  # the plan flag that must be on, if any

    def min_gap_seconds(self, plan: PlanCatalog, kind: str) -> float:
        """Captures closer than half the interval are refused: clients jitter, but not that
        much (and a retry of the same captureId is not a new capture)."""
        every = self.every_seconds
        if kind == "webcam" and plan.camera_capture_interval:
            every = plan.camera_capture_interval
        return every / 2


RULES: dict[str, KindRule] = {
    "webcam": KindRule(5, 50_000, 256 * 1024, IMAGES, "requires_camera"),  # 50KB/5초
    "screen": KindRule(10, 30_000, 512 * 1024, IMAGES, None),  # 30KB/10초
    "mobile": KindRule(5, 25_000, 256 * 1024, IMAGES, "allows_mobile_camera"),  # 25KB/5초
    "audio": KindRule(360, 5_000_000, 8 * 1024 * 1024, AUDIO, None),  # 5MB/6분
}
MAX_CAPTURE_BYTES = max(rule.max_bytes for rule in RULES.values())

# KEYS: the slot. ARGV: captureId, the gap in ms. 0 when the slot is this capture's now, else
# the milliseconds until it frees. A retry of the holder gets the slot again.
_TAKE_SLOT = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return math.max(1, redis.call('PTTL', KEYS[1]))
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 0
"""


@dataclass(frozen=True, slots=True)
class CaptureRequest:
    kind: str
    capture_id: str
    captured_at: str
    content_type: str
    sha256: str | None


def capture_request(
    args: Mapping[str, str], content_type: str, declared_sha256: str | None
) -> CaptureRequest:
    """From the query (kind, captureId, capturedAt) and the two headers that describe it."""
    kind = args.get("kind", "")
    if kind not in RULES:
        raise ApiError(
            422, "unknown_capture_kind", "kind must be one of " + ", ".join(RULES), {"kind": kind}
        )
    captured_at = check_time(args.get("capturedAt", ""), "capturedAt")
    return CaptureRequest(
        kind,
        check_id(args.get("captureId", ""), "captureId"),
        captured_at,
        content_type.split(";")[0].strip().lower(),
        declared_sha256,
    )


class CaptureService:
    def __init__(self, redis: Redis, catalog: Catalog, files: FileStore, queue: PlanQueue) -> None:
        self.catalog = catalog
        self.files = files
        self.queue = queue
        self._take_slot = redis.register_script(_TAKE_SLOT)

    async def receive(self, who: Principal, request: CaptureRequest, data: bytes) -> bytes:
        if who.role != "candidate":
            raise ApiError(403, "candidates_only", "only candidates upload captures")
        rule = RULES[request.kind]
        plan = await self.catalog.get(who.plan_id)
        if rule.flag is not None and not getattr(plan, rule.flag):
            raise ApiError(
                409,
                "capture_not_enabled",
                f"this plan takes no {request.kind} captures ({rule.flag} is off)",
                {"kind": request.kind},
            )
        if len(data) > rule.max_bytes:
            raise ApiError(
                413,
                "payload_too_large",
                f"a {request.kind} capture is at most {rule.max_bytes} bytes",
                {"limit": rule.max_bytes},
            )
        if request.content_type not in rule.types:
            raise ApiError(
                415,
                "unsupported_media_type",
                f"a {request.kind} capture is one of " + ", ".join(rule.types),
                {"contentType": request.content_type},
            )
        sha256 = verified_sha256(data, request.sha256, "capture")
        if not _SIGNATURES[request.content_type](data):
            raise ApiError(
                422,
                "content_mismatch",
                f"the capture is not {request.content_type}",
                {"contentType": request.content_type},
            )
        await self._slot(who, request, rule.min_gap_seconds(plan, request.kind))
        relative = Path(
            "captures",
            who.plan_id,
            who.subject_id,
            f"{sha256}.{_EXTENSIONS[request.content_type]}",
        )
        await asyncio.to_thread(self.files.put, self.files.root / relative, data)
        fields = {
            "kind": request.kind,
            "cid": request.capture_id,
            "ctype": request.content_type,
            "size": str(len(data)),
            "sha": sha256,
            "cap": request.captured_at,
            "path": relative.as_posix(),
        }
        return await self.queue.submit(who, "media", fields, all_before([request.captured_at]))

    async def _slot(self, who: Principal, request: CaptureRequest, gap_seconds: float) -> None:
        slot = keys.capture_rate(who.plan_id, who.subject_id, request.kind)
        gap_ms = int(gap_seconds * 1000)
        wait_ms = int(await self._take_slot(keys=[slot], args=[request.capture_id, gap_ms]))
        if wait_ms > 0:
            raise ApiError(
                429,
                "capture_too_frequent",
                f"one {request.kind} capture per {gap_seconds:g} s at most",
                {"retryAfterSeconds": math.ceil(wait_ms / 1000)},
            )
