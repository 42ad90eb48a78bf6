"""The candidate page's Python half, run in Pyodide: the examsync client, spoken to in JSON.

candidate.js owns the screen; this module owns the SDK. Everything crossing between them is
JSON text (no proxies to keep alive or destroy): calls return JSON, and every client event
reaches the page through ``emit(json_text)`` as ``{"type": ..., ...}``.

The question order is computed here, from the candidate and the plan only, so it is the same
after a reload, in a second tab and on another device.
"""

from __future__ import annotations

import io
import json
import random
import time
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

import examsync
from examsync import (
    Alert,
    AnswerAcknowledged,
    AnswerOverridden,
    ConnectionChanged,
    DeliveryFailure,
    DeviceChanged,
    ExamEnded,
    ProgressReloaded,
    RestoreReport,
    StageChanged,
    StorageState,
    SyncState,
    UploadOutcome,
)

__all__ = ["CandidatePage", "choose_exam_code", "event_message", "exam_for", "order_questions"]

Emit = Callable[[str], object]


def choose_exam_code(session: Mapping[str, Any]) -> str | None:
    """The exam this candidate works on: the current stage's, else the next stage's with one.

    Before the first stage (or when nothing is current) the plan's first exam counts, so the
    page can show it the moment the exam stage begins.
    """
    stages = sorted(session.get("stages") or [], key=lambda s: s.get("order") or 0)
    current = (session.get("progress") or {}).get("currentStage")
    ids = [s.get("stageId") for s in stages]
    start = ids.index(current) if current in ids else 0
    for stage in stages[start:] + stages[:start]:
        if stage.get("examCode"):
            return str(stage["examCode"])
    return None


def exam_for(manifest: Mapping[str, Any], exam_code: str) -> dict[str, Any]:
    for exam in manifest.get("exams") or []:
        if exam.get("examCode") == exam_code:
            return dict(exam)
    raise ValueError(f"the package has no exam {exam_code}")


def order_questions(
    exam: Mapping[str, Any], seed: str, *, shuffle_questions: bool, shuffle_answers: bool
) -> list[dict[str, Any]]:
    """The exam's questions (and choices) in this candidate's order.

    Seeded by ``seed`` (plan, candidate and exam): the same candidate always gets the same
    order, another candidate most likely another one. ``random.Random`` with a string seed
    hashes it with SHA-512, the same on every Python.
    """
    questions = [dict(q) for q in exam.get("questions") or []]
    if shuffle_questions:
        random.Random(f"{seed}:questions").shuffle(questions)
    if shuffle_answers:
        for question in questions:
            if question.get("choices"):
                choices = list(question["choices"])
                random.Random(f"{seed}:{question['quizCode']}").shuffle(choices)
                question["choices"] = choices
    return questions


def _error(error: BaseException | None) -> str | None:
    return None if error is None else f"{type(error).__name__}: {error}"


def event_message(event: object) -> dict[str, Any] | None:
    """What the page is told of a client event (None: nothing it shows)."""
    if isinstance(event, SyncState):
        return {
            "type": "sync",
            "status": event.status.value,
            "pending": event.pending,
            "oldestPendingAge": event.oldest_pending_age,
            "lastAckAt": event.last_ack_at,
            "inFlight": event.in_flight,
            "overridden": list(event.overridden),
        }
    if isinstance(event, StorageState):
        return {
            "type": "storage",
            "backend": event.backend,
            "durable": event.durable,
            "error": _error(event.error),
        }
    if isinstance(event, ConnectionChanged):
        return {
            "type": "connection",
            "state": event.state.value,
            "fallback": event.fallback,
            "channel": event.save_channel.value if event.save_channel else None,
            "reason": event.reason,
        }
    if isinstance(event, ExamEnded):
        return {"type": "exam_end", "message": event.message, "timestamp": event.timestamp}
    if isinstance(event, StageChanged):
        return {**event.data, "type": "stage_changed"}
    if isinstance(event, ProgressReloaded):  # events were missed: this replaces what they said
        return {"type": "progress", "progress": dict(event.progress)}
    if isinstance(event, AnswerAcknowledged):
        return {"type": "ack", "quizCode": event.quiz_code, "version": event.version}
    if isinstance(event, AnswerOverridden):  # the page shows both values until dismissed
        return {
            "type": "overridden",
            "quizCode": event.quiz_code,
            "version": event.version,
            "value": event.value,
            "lostValue": event.lost_value,
        }
    if isinstance(event, DeviceChanged):
        return {
            "type": "device",
            "deviceId": event.device_id,
            "since": event.since,
            "policy": event.policy,
            "thisDevice": event.this_device,
            "replaced": event.replaced,
        }
    if isinstance(event, RestoreReport):
        return {"type": "restore", "restored": list(event.restored), "missing": list(event.missing)}
    if isinstance(event, DeliveryFailure):
        return {"type": "failure", "attempt": event.attempt, "error": _error(event.error)}
    if isinstance(event, UploadOutcome):
        return {"type": "upload", "kind": event.kind, "status": event.status, "id": event.upload_id}
    if isinstance(event, Alert):
        return {"type": "alert", "where": event.where, "error": _error(event.error)}
    return None


class CandidatePage:
    """One candidate's client for the page. ``emit`` gets every event as JSON text."""

    def __init__(self, base_url: str, plan_id: str, emit: Emit) -> None:
        self.base_url = base_url
        self.plan_id = plan_id
        self._emit = emit
        self._client: Any = None
        self.exam_code: str | None = None

    async def login(
        self, candidate_id: str | None, auth_code: str | None, key: str | None, exam_code: str
    ) -> str:
        """Log in, restore, start syncing; the session and local state as JSON, or
        ``{"refused": {code, retryAfter, lockedUntil?}}`` when the sign-in limits refused it.

        ``exam_code`` is the one this device used last ("" if none): without it a first login
        asks the server which exams the plan has. The client waits for the candidate's Web
        Lock as long as another tab holds it (that tab writes; this one relays, tabs.js).
        """
        try:
            if not exam_code:
                exam_code = await self._discover_exam(candidate_id, auth_code, key)
            self.exam_code = exam_code
            client = examsync.create_client(
                self.base_url, self.plan_id, exam_code, lock_timeout=None
            )
            client.add_listener(self._forward)
            session = await client.login(candidate_id=candidate_id, auth_code=auth_code, key=key)
        except examsync.RateLimitedError as exc:
            # The server's sign-in limits: the page says why and how long, not "wrong code".
            refused = {"code": exc.code, "retryAfter": exc.retry_after, **exc.details}
            return json.dumps({"refused": refused}, ensure_ascii=False)
        self._client = client
        return json.dumps(
            {
                "session": dict(session.raw),
                "token": session.token,
                "candidateId": session.candidate_id,
                "examCode": exam_code,
                **self._local_state(),
            },
            ensure_ascii=False,
        )

    async def take_over(self) -> str:
        """Continue the exam on this device (a new sign-in): what changed elsewhere is
        restored first; the answers, conflicts and device state afterwards, as JSON."""
        await self._client.take_over()
        return json.dumps(self._local_state(), ensure_ascii=False)

    def dismiss_conflict(self, quiz_code: str) -> bool:
        """The candidate has seen that ``quiz_code``'s edit here was replaced."""
        dismissed: bool = self._client.dismiss_conflict(quiz_code)
        return dismissed

    async def _discover_exam(
        self, candidate_id: str | None, auth_code: str | None, key: str | None
    ) -> str:
        from examsync.pyodide import FetchTransport

        http = FetchTransport(self.base_url)
        try:
            session = await http.login(
                self.plan_id, candidate_id=candidate_id, auth_code=auth_code, key=key
            )
        finally:
            await http.aclose()
        found = choose_exam_code(session.raw)
        if found is None:
            raise examsync.ExamSyncError("this plan has no exam stage")
        return found

    async def questions(self, shuffle_questions: bool, shuffle_answers: bool) -> str:
        """This exam's questions in this candidate's order (from the package, cached offline)."""
        package = await self._client.download_package()
        with zipfile.ZipFile(io.BytesIO(package.data)) as archive:
            manifest = json.loads(archive.read("manifest.json"))
        exam = exam_for(manifest, str(self.exam_code))
        seed = f"{self.plan_id}:{self._client.session.candidate_id}:{self.exam_code}"
        ordered = order_questions(
            exam, seed, shuffle_questions=shuffle_questions, shuffle_answers=shuffle_answers
        )
        return json.dumps(
            {"title": exam.get("title", ""), "questions": ordered}, ensure_ascii=False
        )

    async def answer(self, quiz_code: str, value: str) -> int:
        """Store an answer; returns its version once it is in IndexedDB."""
        version: int = await self._client.save_answer(quiz_code, value)
        return version

    async def capture(self, jpeg: Any, taken_at: float) -> int:
        """Store a webcam frame (a JS Uint8Array) for upload; returns the uploads waiting."""
        data = bytes(jpeg.to_bytes()) if hasattr(jpeg, "to_bytes") else bytes(jpeg)
        await self._client.uploads.capture("webcam", data, "image/jpeg", taken_at)
        pending: int = self._client.uploads.pending
        return pending

    def uploads_pending(self) -> int:
        pending: int = self._client.uploads.pending
        return pending

    def log(self, event: str, level: str, data_json: str) -> None:
        """A log entry for the server's log queue (batched by the SDK)."""
        self._client.uploads.log(event, level, json.loads(data_json))

    def navigate(self, from_quiz: str, to_quiz: str) -> None:
        self._client.record_navigation(from_quiz, to_quiz)

    def behavior(self, focus_ms: int, keystrokes: int) -> None:
        self._client.record_behavior(focus_ms=focus_ms, keystrokes=keystrokes)

    def answers(self) -> str:
        return json.dumps(self._answers(), ensure_ascii=False)

    def sync_state(self) -> str:
        return json.dumps(self._stamped(self._client.sync_state))

    async def flush(self, timeout: float) -> bool:
        synced: bool = await self._client.flush(timeout)
        return synced

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    def _local_state(self) -> dict[str, Any]:
        """What the page shows of this device: answers, open conflicts, the active device."""
        conflicts = {
            code: {"lostValue": record.lost_value, "value": record.value}
            for code, record in self._client.overridden.items()
        }
        active = self._client.active_device
        device = None
        if active is not None:
            device = {
                "type": "device",
                "deviceId": active.device_id,
                "since": active.since,
                "policy": active.policy,
                "thisDevice": active.device_id == self._client.device_id,
                "replaced": self._client.replaced,
            }
        return {"answers": self._answers(), "conflicts": conflicts, "device": device}

    def _answers(self) -> dict[str, dict[str, Any]]:
        return {
            code: {"value": a.value, "version": a.version}
            for code, a in self._client.answers.items()
        }

    def _forward(self, event: object) -> None:
        message = self._stamped(event)
        if message is not None:
            self._emit(json.dumps(message, ensure_ascii=False))

    @staticmethod
    def _stamped(event: object) -> dict[str, Any] | None:
        """The event's message with ``at``: when it was true (ages are counted from it)."""
        message = event_message(event)
        if message is not None:
            message["at"] = time.time()
        return message
