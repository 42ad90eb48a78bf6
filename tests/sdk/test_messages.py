"""Wire messages: round trips, and refusal of anything malformed (examsync.messages)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from examsync.exceptions import (
    AuthenticationError,
    ChecksumMismatch,
    RateLimitedError,
    RemoteProtocolError,
    ServerError,
)
from examsync.messages import (
    AckStatus,
    AnswerBehavior,
    AnswerEntry,
    AnswerResult,
    Behavior,
    Device,
    Metadata,
    NavigationStep,
    Receipt,
    ReceiptPayload,
    RestoreAnswer,
    RestoreMetadata,
    RestoreResponse,
    SaveAck,
    SavePayload,
    parse_error,
    read_save_response,
)
from examsync.protocol import checksum, value_sha256

T0 = "2024-01-01T09:00:00.000Z"


def make_payload() -> SavePayload:
    return SavePayload(
        exam_id="PLAN202401",
        test_code="EXAM202401",
        user_id="CAND202301",
        timestamp=T0,
        answers={"Q001": AnswerEntry("①", 2, T0), "Q002": AnswerEntry("서술형 답", 1, T0)},
        metadata=Metadata(
            device=Device("PC", "Chrome 120", "Windows 11"),
            behavior=Behavior(1500, 3, 12, (NavigationStep("Q001", "Q002", T0),)),
        ),
        status="in_progress",
    )


def make_receipt(quiz_code: str = "Q001", version: int = 2, value: str = "①") -> Receipt:
    return Receipt(
        key_id="k1",
        payload=ReceiptPayload(
            "PLAN202401", "CAND202301", "EXAM202401", quiz_code, version, value_sha256(value), T0
        ),
        signature=bytes(range(64)),
    )


def test_save_payload_round_trip_with_checksum() -> None:
    payload = make_payload()
    wire = payload.to_wire()
    assert wire["checksum"] == checksum(wire)
    assert wire["metadata"]["behavior"]["navigation"] == [
        {"from": "Q001", "to": "Q002", "timestamp": T0}
    ]
    assert SavePayload.from_wire(wire) == payload


def test_save_payload_messages_are_frozen() -> None:
    payload = make_payload()
    with pytest.raises(AttributeError):
        payload.status = "completed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        payload.answers["Q003"] = AnswerEntry("x", 1, T0)  # type: ignore[index]


def test_save_payload_checksum_is_checked_first() -> None:
    wire = make_payload().to_wire()
    wire["answers"]["Q001"]["value"] = "②"
    with pytest.raises(ChecksumMismatch):
        SavePayload.from_wire(wire)


def resign(wire: dict[str, Any]) -> dict[str, Any]:
    wire["checksum"] = checksum(wire)
    return wire


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda w: w["answers"]["Q001"].__setitem__("version", 0), "answers.Q001.version"),
        (lambda w: w["answers"]["Q001"].__setitem__("version", True), "answers.Q001.version"),
        (lambda w: w["answers"]["Q001"].__setitem__("version", 1.5), "answers.Q001.version"),
        # Past 2**53 - 1 a browser's numbers are not exact, past 2**63 SQLite cannot store it.
        (lambda w: w["answers"]["Q001"].__setitem__("version", 2**53), "answers.Q001.version"),
        (lambda w: w["metadata"]["behavior"].__setitem__("focusTime", 10**20), "focusTime"),
        (lambda w: w["answers"]["Q001"].__setitem__("value", 7), "answers.Q001.value"),
        (lambda w: w["answers"]["Q001"].__setitem__("updated", "09:00"), "answers.Q001.updated"),
        (lambda w: w["answers"].__setitem__("Q001", []), "answers.Q001"),
        (lambda w: w.pop("userId"), "userId"),
        (lambda w: w["metadata"]["behavior"].__setitem__("keystrokes", -1), "keystrokes"),
        (lambda w: w["metadata"]["behavior"].__setitem__("navigation", {}), "navigation"),
        (lambda w: w["metadata"].pop("device"), "metadata.device"),
    ],
)
def test_save_payload_refuses_bad_fields(mutate: Any, path: str) -> None:
    wire = make_payload().to_wire()
    mutate(wire)
    with pytest.raises(RemoteProtocolError) as info:
        SavePayload.from_wire(resign(wire))
    assert info.value.path is not None and path in info.value.path


def test_unknown_fields_are_tolerated() -> None:
    wire = make_payload().to_wire()
    wire["clientVersion"] = "1.0"
    assert SavePayload.from_wire(resign(wire)) == make_payload()


def test_receipt_round_trip_and_signed_bytes() -> None:
    receipt = make_receipt()
    wire = receipt.to_wire()
    assert wire["alg"] == "Ed25519"
    assert Receipt.from_wire(wire) == receipt
    assert receipt.signed_bytes().startswith(b'{"candidateId":"CAND202301","examCode"')


@pytest.mark.parametrize(
    "mutate",
    [
        lambda w: w.__setitem__("alg", "HS256"),
        lambda w: w.__setitem__("signature", "AAAA"),  # too short for Ed25519
        lambda w: w.__setitem__("signature", "not base64!"),
        lambda w: w["payload"].__setitem__("valueSha256", "ABC"),
        lambda w: w["payload"].__setitem__("extra", 1),  # would break the signature
        lambda w: w["payload"].pop("serverTime"),
    ],
)
def test_receipt_refuses_bad_fields(mutate: Any) -> None:
    wire = make_receipt().to_wire()
    mutate(wire)
    with pytest.raises(RemoteProtocolError):
        Receipt.from_wire(wire)


def test_save_ack_round_trip() -> None:
    ack = SaveAck(
        results={
            "Q001": AnswerResult(AckStatus.ACCEPTED, 2, 2, make_receipt()),
            "Q002": AnswerResult(AckStatus.SUPERSEDED, 1, 4, None, "②", T0),
        },
        server_time=T0,
    )
    wire = ack.to_wire()
    assert wire["results"]["Q002"] == {
        "status": "superseded",
        "version": 1,
        "currentVersion": 4,
        "currentValue": "②",
        "currentUpdated": T0,
        "receipt": None,
    }
    assert "currentValue" not in wire["results"]["Q001"]
    assert SaveAck.from_wire(wire) == ack


def test_save_ack_current_version_may_be_below_the_version_sent() -> None:
    # The server assigns versions: a device that proposed above what it holds is told so.
    wire = {
        "results": {
            "Q001": {"status": "duplicate", "version": 7, "currentVersion": 3, "receipt": None},
            "Q002": {
                "status": "superseded",
                "version": 5,
                "currentVersion": 2,
                "currentValue": "",
                "currentUpdated": T0,
            },
        },
        "serverTime": T0,
    }
    ack = SaveAck.from_wire(wire)
    assert ack.results["Q001"].current_version == 3
    assert (ack.results["Q002"].current_version, ack.results["Q002"].current_value) == (2, "")


@pytest.mark.parametrize(
    "wire",
    [
        [],
        {"results": {}, "serverTime": "now"},
        {"results": [], "serverTime": T0},
        {"results": {"Q1": {"status": "ok", "version": 1, "receipt": None}}, "serverTime": T0},
        {"results": {"Q1": {"status": "accepted", "version": "1"}}, "serverTime": T0},
        {"results": {"Q1": {"status": "accepted", "version": 1}}, "serverTime": T0},
        {
            "results": {"Q1": {"status": "superseded", "version": 2, "currentVersion": 3}},
            "serverTime": T0,
        },
        {
            "results": {
                "Q1": {
                    "status": "superseded",
                    "version": 2,
                    "currentVersion": 3,
                    "currentValue": "b",
                    "currentUpdated": "yesterday",
                }
            },
            "serverTime": T0,
        },
        {"results": {"Q1": {"status": "accepted", "version": 1, "receipt": 5}}, "serverTime": T0},
    ],
)
def test_save_ack_refuses_malformed(wire: Any) -> None:
    with pytest.raises(RemoteProtocolError):
        SaveAck.from_wire(wire)


def make_restore() -> RestoreResponse:
    return RestoreResponse(
        exam_id="PLAN202401",
        test_code="EXAM202401",
        user_id="CAND202301",
        answers={
            "Q001": RestoreAnswer("①", 2, T0, AnswerBehavior(10, 1, 4)),
            "Q002": RestoreAnswer("답", 1, T0),
        },
        metadata=RestoreMetadata(T0, 3, "in_progress", Device("PC", "Chrome", "Linux")),
        navigation=(NavigationStep("Q001", "Q002", T0),),
        missing=("Q003",),
        server_time=T0,
    )


def test_restore_round_trip_with_checksum() -> None:
    restore = make_restore()
    wire = restore.to_wire()
    assert wire["checksum"] == checksum(wire)
    assert "behavior" not in wire["answers"]["Q002"]
    assert RestoreResponse.from_wire(copy.deepcopy(wire)) == restore


def test_restore_of_a_new_candidate() -> None:
    wire = RestoreResponse("P", "E", "C", {}, RestoreMetadata(), server_time=T0).to_wire()
    assert wire["metadata"] == {"lastSync": None, "version": 0, "status": "", "device": None}
    restored = RestoreResponse.from_wire(wire)
    assert restored.answers == {} and restored.missing == ()


def test_restore_refuses_tampering_and_bad_types() -> None:
    wire = make_restore().to_wire()
    wire["answers"]["Q001"]["version"] = 9
    with pytest.raises(ChecksumMismatch):
        RestoreResponse.from_wire(wire)
    wire = make_restore().to_wire()
    wire["missing"] = ["Q003", 4]
    with pytest.raises(RemoteProtocolError, match="missing"):
        RestoreResponse.from_wire(resign(wire))
    wire = make_restore().to_wire()
    del wire["checksum"]
    with pytest.raises(RemoteProtocolError, match="checksum"):
        RestoreResponse.from_wire(wire)


def test_parse_error_maps_status_and_body() -> None:
    body = {"error": {"code": "checksum_mismatch", "message": "no", "details": {"expected": "a"}}}
    error = parse_error(422, body)
    assert type(error) is ServerError
    assert (error.code, error.status, error.message) == ("checksum_mismatch", 422, "no")
    assert error.details == {"expected": "a"}
    assert not error.retryable
    assert isinstance(parse_error(401, body), AuthenticationError)
    limited = parse_error(429, body)
    assert isinstance(limited, RateLimitedError) and limited.retryable


def test_parse_error_without_an_error_object() -> None:
    error = parse_error(502, "<html>Bad gateway</html>")
    assert (error.code, error.status, error.retryable) == ("http_502", 502, True)
    assert parse_error(400, {"error": {"code": 1}}).code == "http_400"


def test_a_save_answer_is_read_into_its_ack_or_its_error() -> None:
    ack = SaveAck({"Q001": AnswerResult(AckStatus.SUPERSEDED, 1, 4, None, "b", T0)}, T0)
    assert read_save_response(200, ack.to_wire()) == ack
    assert read_save_response(200, json.dumps(ack.to_wire()).encode()) == ack
    body = {"error": {"code": "rate_limited", "message": "slow down", "details": {}}}
    with pytest.raises(RateLimitedError) as info:
        read_save_response(429, json.dumps(body))
    assert (info.value.code, info.value.status) == ("rate_limited", 429)
    for status, malformed in ((200, b"<html>"), (200, {"results": []})):
        with pytest.raises(RemoteProtocolError):
            read_save_response(status, malformed)
