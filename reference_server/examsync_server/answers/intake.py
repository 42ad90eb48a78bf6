"""Receiving a save (seed 002 §3.1 step 1-2): validate, queue, wait for the commit, answer.

The checks, in order: the body decodes and its checksum holds (before anything else is read);
the shape is seed 002 §4.1; the caller is the candidate the save names, in the plan it names;
`testCode` is one of the plan's exam codes, every `quizCode` is a question of that exam and
every value fits the question. Then the plan queue (pipeline/plan_queue.py) appends it to the
plan's answer stream if the plan is in progress, and unless the sending device was replaced by
another before the save's latest edit (`device_replaced`). Nothing is stored by this module: the
persister stores, and this request answers only once the persister has committed.
"""

from __future__ import annotations

from dataclasses import dataclass

from examsync.exceptions import ChecksumMismatch, RemoteProtocolError
from examsync.messages import SavePayload
from examsync.protocol import decode_json

from ..access.tokens import Principal
from ..base import fast_json
from ..base.clock import parse_iso
from ..config import Settings
from ..errors import ApiError
from ..exam.catalog import Catalog
from ..pipeline.plan_queue import PlanQueue, made_by


@dataclass(frozen=True, slots=True)
class ValidSave:
    principal: Principal
    text: str  # the body as received: valid JSON, so queued as it is rather than re-encoded
    parsed: SavePayload


class SaveService:
    def __init__(self, catalog: Catalog, queue: PlanQueue, settings: Settings) -> None:
        self.catalog = catalog
        self.queue = queue
        self.settings = settings

    async def receive(self, who: Principal, body: bytes, decoded: object = None) -> bytes:
        """Validate and queue a save; return the save ack (JSON) once it is committed.

        `decoded`: `body` already decoded as strictly as `decode_json` does (a socket frame's
        payload, its JSON text re-encoded), so it is not decoded a second time."""
        save = await self.validate(who, body, decoded)
        fields = {"exam": save.parsed.test_code, "p": save.text}
        # The latest edit decides both checks: made before the end (a late save), and made
        # before its device was replaced. Each stamp is parsed once, on this hot path.
        latest = max((parse_iso(e.updated) for e in save.parsed.answers.values()), default=None)
        edited_ms = 0 if latest is None else round(latest.timestamp() * 1000)
        return await self.queue.submit(who, "answers", fields, made_by(latest), edited_ms)

    async def validate(self, who: Principal, body: bytes, decoded: object = None) -> ValidSave:
        if who.role != "candidate":
            raise ApiError(403, "candidates_only", "only candidates save answers")
        if len(body) > self.settings.limits.max_save_bytes:
            raise ApiError(
                413,
                "payload_too_large",
                "the save is too large",
                {"limit": self.settings.limits.max_save_bytes},
            )
        try:
            text = body.decode("utf-8")
            payload = decode_json(text) if decoded is None else decoded
        except UnicodeDecodeError:
            raise ApiError(400, "invalid_json", "the body is not UTF-8") from None
        except RemoteProtocolError as exc:
            raise ApiError(400, "invalid_json", str(exc)) from None
        try:
            parsed = SavePayload.from_wire(payload, quick=fast_json.canonical)
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
        if len(parsed.answers) > self.settings.limits.max_answers_per_save:
            raise ApiError(
                422,
                "too_many_answers",
                "too many answers in one save",
                {"limit": self.settings.limits.max_answers_per_save},
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
