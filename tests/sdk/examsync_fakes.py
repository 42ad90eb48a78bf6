"""A tiny in-test model of the server's save and restore rules (DESIGN §4), and a fake clock.

Not the reference server: just enough to check the engine against the contract, with no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from examsync.exceptions import RemoteProtocolError
from examsync.messages import (
    AckStatus,
    AnswerResult,
    Receipt,
    ReceiptPayload,
    RestoreAnswer,
    RestoreMetadata,
    RestoreResponse,
    SaveAck,
    SavePayload,
    judge_version,
)
from examsync.protocol import decode_json, format_timestamp, value_sha256

PLAN, EXAM, CANDIDATE = "PLAN202401", "EXAM202401", "CAND202301"


@dataclass
class Clock:
    now: float = 1_704_099_600.0  # 2024-01-01T09:00:00Z

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass
class StoredAnswer:
    value: str
    version: int
    updated: str


@dataclass
class FakeServer:
    """Keeps the highest version per answer, by the server's rule (judge_version)."""

    plan_id: str = PLAN
    exam_code: str = EXAM
    candidate_id: str = CANDIDATE
    answers: dict[str, StoredAnswer] = field(default_factory=dict)
    history: list[tuple[str, int, str]] = field(default_factory=list)
    saves: int = 0
    now: float = 1_704_099_600.0

    def save(self, body: bytes | dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Apply one save; return (HTTP status, JSON body) as the server would answer."""
        self.saves += 1
        try:
            wire = decode_json(body) if isinstance(body, bytes) else body
            payload = SavePayload.from_wire(wire)
        except RemoteProtocolError as exc:
            code = "checksum_mismatch" if "checksum" in str(exc) else "invalid_payload"
            return 422, {"error": {"code": code, "message": str(exc), "details": {}}}
        server_time = format_timestamp(self.now)
        results: dict[str, AnswerResult] = {}
        for code, entry in payload.answers.items():
            current = self.answers.get(code)
            stored = None if current is None else (current.version, value_sha256(current.value))
            status = judge_version(stored, entry.version, value_sha256(entry.value))
            if status is AckStatus.ACCEPTED:
                self.answers[code] = StoredAnswer(entry.value, entry.version, entry.updated)
            if status is not AckStatus.DUPLICATE:
                self.history.append((code, entry.version, entry.value))
            receipt = None
            if status is not AckStatus.SUPERSEDED:
                receipt = Receipt(
                    key_id="test",
                    payload=ReceiptPayload(
                        payload.exam_id,
                        payload.user_id,
                        payload.test_code,
                        code,
                        entry.version,
                        value_sha256(entry.value),
                        server_time,
                    ),
                    signature=bytes(64),
                )
            results[code] = AnswerResult(status, entry.version, self.answers[code].version, receipt)
        return 200, SaveAck(results, server_time).to_wire()

    def restore(self, *, missing: tuple[str, ...] = ()) -> dict[str, Any]:
        answers = {
            code: RestoreAnswer(a.value, a.version, a.updated)
            for code, a in self.answers.items()
            if code not in missing
        }
        return RestoreResponse(
            exam_id=self.plan_id,
            test_code=self.exam_code,
            user_id=self.candidate_id,
            answers=answers,
            metadata=RestoreMetadata(
                format_timestamp(self.now), len(self.history), "in_progress", None
            ),
            missing=missing,
            server_time=format_timestamp(self.now),
        ).to_wire()

    def state(self) -> dict[str, tuple[int, str]]:
        return {code: (a.version, a.value) for code, a in self.answers.items()}
