"""A tiny in-test model of the server's save and restore rules (docs/protocol.md), and a fake
clock.

Not the reference server: just enough to check the engine against the contract, with no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from examsync.devices import ActiveDevice, device_replaced_body, refuses, server_sign_in
from examsync.edits import StoredEdit, edit_time_ms, judge_edit
from examsync.exceptions import RemoteProtocolError
from examsync.frames import device_active_message
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
    edited_at: int  # ms since the epoch: the kept edit's time (examsync.edits)
    device: str = ""

    @property
    def updated(self) -> str:
        return format_timestamp(self.edited_at / 1000)


@dataclass
class FakeServer:
    """Keeps the latest edit per answer, by the server's rule (examsync.edits.judge_edit).

    ``clock`` is the server's: its ``serverTime``, and the receive time an edit's time is
    clamped to. Without one, ``now`` is the server time and nothing is clamped (a server whose
    clock is far ahead), which single-device tests with a fixed clock need.

    Devices (docs/protocol.md, "Several devices"): :meth:`sign_in` records the active device
    and queues a ``device_active`` frame in ``device_frames``; under ``policy`` ``single`` a
    save from another device carrying an edit from the moment that device was replaced on (the
    first takeover since it was last active) is refused with 409 ``device_replaced`` (the
    save's ``metadata.device.id`` stands for the token's device).
    """

    plan_id: str = PLAN
    exam_code: str = EXAM
    candidate_id: str = CANDIDATE
    answers: dict[str, StoredAnswer] = field(default_factory=dict)
    history: list[tuple[str, int, str]] = field(default_factory=list)  # every kept (code, v, value)
    # Every verdict: (code, device id, the edit's updated, its value, status).
    verdicts: list[tuple[str, str, str, str, AckStatus]] = field(default_factory=list)
    saves: int = 0
    now: float = 1_704_099_600.0
    clock: Callable[[], float] | None = None
    policy: str = "single"
    active: ActiveDevice | None = None
    device_frames: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0
    replaced: dict[str, str | None] = field(default_factory=dict)  # device -> replaced since

    def sign_in(self, device_id: str, *, activate: bool = True) -> dict[str, Any]:
        """A candidate's sign-in from ``device_id``: the device fields of its answer."""
        now = self.clock() if self.clock is not None else self.now
        before = self.active
        self.active, taken_over = server_sign_in(
            before, self.replaced, device_id, activate=activate, now=now, policy=self.policy
        )
        if self.active is not None and self.active != before:
            since = self.active.since
            self.device_frames.append(
                device_active_message(
                    self.plan_id, self.candidate_id, None, device_id, since, self.policy
                )
            )
        active = None
        if self.active is not None:
            active = {"deviceId": self.active.device_id, "since": self.active.since}
        return {
            "deviceId": device_id,
            "devicePolicy": self.policy,
            "activeDevice": active,
            "replacedDevice": taken_over,
        }

    def save(self, body: bytes | dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Apply one save; return (HTTP status, JSON body) as the server would answer."""
        self.saves += 1
        try:
            wire = decode_json(body) if isinstance(body, bytes) else body
            payload = SavePayload.from_wire(wire)
        except RemoteProtocolError as exc:
            code = "checksum_mismatch" if "checksum" in str(exc) else "invalid_payload"
            return 422, {"error": {"code": code, "message": str(exc), "details": {}}}
        received = self.clock() if self.clock is not None else self.now
        received_ms = round(received * 1000) if self.clock is not None else 2**62
        server_time = format_timestamp(received)
        device = payload.metadata.device.id
        stamps = [e.updated for e in payload.answers.values()]
        replaced_since = self.replaced.get(device)
        if self.active is not None and refuses(self.active, device, stamps, replaced_since):
            self.refused += 1
            return 409, device_replaced_body(self.active, replaced_since)
        results: dict[str, AnswerResult] = {}
        for code, entry in payload.answers.items():
            current = self.answers.get(code)
            stored = None
            if current is not None:
                digest = value_sha256(current.value)
                stored = StoredEdit(current.version, digest, current.edited_at, current.device)
            edited_at = edit_time_ms(entry.updated, received_ms)
            status, kept = judge_edit(
                stored, entry.version, value_sha256(entry.value), edited_at, device
            )
            if status is AckStatus.ACCEPTED:
                self.answers[code] = StoredAnswer(entry.value, kept.version, edited_at, device)
                self.history.append((code, kept.version, entry.value))
            elif current is not None:  # a duplicate may move the stored edit's time up
                current.edited_at, current.device = kept.edited_at, kept.device
            self.verdicts.append((code, device, entry.updated, entry.value, status))
            now_kept = self.answers[code]
            receipt = Receipt(
                key_id="test",
                payload=ReceiptPayload(
                    payload.exam_id,
                    payload.user_id,
                    payload.test_code,
                    code,
                    now_kept.version,
                    value_sha256(now_kept.value),
                    server_time,
                ),
                signature=bytes(64),
            )
            superseded = status is AckStatus.SUPERSEDED
            results[code] = AnswerResult(
                status,
                entry.version,
                now_kept.version,
                receipt,
                now_kept.value if superseded else None,
                now_kept.updated if superseded else None,
            )
        return 200, SaveAck(results, server_time).to_wire()

    def restore(self, *, missing: tuple[str, ...] = ()) -> dict[str, Any]:
        server_time = format_timestamp(self.clock() if self.clock is not None else self.now)
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
            metadata=RestoreMetadata(server_time, len(self.history), "in_progress", None),
            missing=missing,
            server_time=server_time,
        ).to_wire()

    def state(self) -> dict[str, tuple[int, str]]:
        return {code: (a.version, a.value) for code, a in self.answers.items()}
