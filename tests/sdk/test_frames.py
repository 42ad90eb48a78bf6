"""Socket frames: parsing what the server sends, building what we send (examsync.frames)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from examsync.exceptions import RateLimitedError, RemoteProtocolError
from examsync.frames import (
    EXAM_END_MESSAGE,
    Auth,
    ErrorFrame,
    ExamEnded,
    Frame,
    Ping,
    Pong,
    ReloadState,
    Resumed,
    SaveAckFrame,
    StageChanged,
    UnknownFrame,
    Welcome,
    auth_frame,
    auth_refused_message,
    dead_letter_alert_message,
    error_message,
    exam_end_message,
    examinee_connection_message,
    examinee_lost_message,
    parse_frame,
    parse_poll,
    ping_frame,
    ping_message,
    pong_frame,
    pong_message,
    position_of,
    read_auth,
    reload_state_message,
    resumed_message,
    save_ack_frame,
    save_frame,
    stage_changed_message,
    welcome_message,
)
from examsync.messages import AckStatus, AnswerResult, SaveAck, parse_error
from examsync.protocol import canonical_json


def test_welcome_of_the_reference_server() -> None:
    frame = parse_frame(
        '{"type":"welcome","socketId":"abc","role":"candidate","planId":"P",'
        '"serverTime":"2024-01-01T09:00:00.000Z"}'
    )
    assert frame == Welcome("abc", "candidate", "P", "2024-01-01T09:00:00.000Z", frozenset())
    with_features = parse_frame(
        '{"type":"welcome","socketId":"a","role":"candidate","features":["save","x"]}'
    )
    assert isinstance(with_features, Welcome) and "save" in with_features.features


def test_exam_end_as_seed_001_sends_it() -> None:
    frame = parse_frame(
        json.dumps(
            {
                "type": "exam_end",
                "message": "시험이 종료되었습니다.",
                "timestamp": "2024-01-01T10:00:00Z",
                "planId": "PLAN202401",
            },
            ensure_ascii=False,
        ).encode()
    )
    assert frame == ExamEnded("PLAN202401", "시험이 종료되었습니다.", "2024-01-01T10:00:00Z")


def test_stage_changed_keeps_the_whole_frame() -> None:
    frame = parse_frame('{"type":"stage_changed","planId":"P","stageId":"S2","timestamp":"t"}')
    assert isinstance(frame, StageChanged)
    assert frame.data["stageId"] == "S2" and frame.plan_id == "P"


def test_save_ack_and_error_frames_carry_their_request_id() -> None:
    ack = parse_frame('{"type":"save_ack","id":"7","results":{},"serverTime":"t"}')
    assert isinstance(ack, SaveAckFrame) and ack.request_id == "7"
    assert parse_frame('{"type":"save_ack","id":7,"results":{}}') == SaveAckFrame(
        "7", {"type": "save_ack", "id": 7, "results": {}}
    )
    err = parse_frame(
        '{"type":"error","id":"7","status":422,'
        '"error":{"code":"checksum_mismatch","message":"no","details":{}}}'
    )
    assert isinstance(err, ErrorFrame) and (err.request_id, err.status) == ("7", 422)
    assert parse_error(err.status, dict(err.body)).code == "checksum_mismatch"
    plain = parse_frame('{"type":"error","error":{"code":"unknown_type","message":"m"}}')
    assert isinstance(plain, ErrorFrame) and (plain.request_id, plain.status) == (None, 0)


def test_positions_of_the_welcome_events_and_the_resume_answers() -> None:
    welcome = parse_frame('{"type":"welcome","socketId":"a","role":"c","position":"5-0"}')
    assert isinstance(welcome, Welcome) and position_of(welcome) == "5-0"
    resumed = parse_frame('{"type":"resumed","position":"9-1","replayed":3}')
    assert resumed == Resumed("9-1", 3) and position_of(resumed) == "9-1"
    reload = parse_frame('{"type":"reload_state","reason":"position_too_old","position":"9-2"}')
    assert reload == ReloadState("position_too_old", "9-2") and position_of(reload) == "9-2"
    # A server whose fan-out has not started yet has no position to give.
    assert parse_frame('{"type":"reload_state","reason":"position_unknown","position":null}') == (
        ReloadState("position_unknown", None)
    )
    stage = parse_frame('{"type":"stage_changed","planId":"P","timestamp":"t","position":"7-0"}')
    assert position_of(stage) == "7-0"
    event = parse_frame('{"type":"examinee_connected","examineeId":"E","position":"8-0"}')
    assert position_of(event) == "8-0"
    for unplaced in (
        '{"type":"welcome","socketId":"a","role":"c"}',
        '{"type":"exam_end","message":"m","timestamp":"t"}',
        '{"type":"note","position":5}',
        '{"type":"ping","ts":1}',
    ):
        assert position_of(parse_frame(unplaced)) is None


def test_unknown_types_are_returned_not_refused() -> None:
    frame = parse_frame('{"type":"examinee_disconnected","examineeId":"E1"}')
    assert isinstance(frame, UnknownFrame) and frame.type == "examinee_disconnected"
    assert parse_frame('{"type":"ping"}') == Ping(None)


@pytest.mark.parametrize(
    "data",
    [
        "nope",
        "[]",
        '{"no":"type"}',
        '{"type":3}',
        '{"type":"save_ack","results":{}}',
        '{"type":"error"}',
        '{"type":"error","error":{},"status":-1}',
        '{"type":"welcome","socketId":"a","role":"c","features":"save"}',
        '{"type":"exam_end","timestamp":"t"}',
        '{"type":"ping","type":"pong"}',
        '{"type":"welcome","socketId":"a","role":"c","position":5}',
        '{"type":"resumed","replayed":3}',
        '{"type":"resumed","position":"1-0","replayed":-1}',
        '{"type":"reload_state","position":"1-0"}',
    ],
)
def test_malformed_frames_raise(data: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_frame(data)


def test_builders() -> None:
    assert json.loads(ping_frame(5)) == {"type": "ping", "ts": 5}
    assert json.loads(pong_frame("x")) == {"type": "pong", "ts": "x"}
    body = canonical_json({"examId": "P", "answers": {"Q1": {"value": "정답"}}})
    frame = json.loads(save_frame("12", body))
    assert frame == {"type": "save", "id": "12", "payload": json.loads(body)}


def test_a_poll_answer_reads_as_the_frames_a_socket_would_have_sent() -> None:
    frames, position = parse_poll(
        '{"events":[{"type":"examinee_lost","position":"5-0"},'
        '{"type":"exam_end","message":"m","timestamp":"t","planId":"P"}],"position":"6-0"}'
    )
    assert position == "6-0"
    assert [type(f) for f in frames] == [UnknownFrame, ExamEnded]
    frames, _ = parse_poll('{"events":[],"position":"7-0","reload":"position_unknown"}')
    assert frames == [ReloadState("position_unknown", "7-0")]
    for bad in (
        '{"position":"1-0"}',
        '{"events":{},"position":"1-0"}',
        '{"events":[]}',
        '{"events":[1],"position":"1-0"}',
        '{"events":[],"position":"1-0","reload":1}',
    ):
        with pytest.raises(RemoteProtocolError):
            parse_poll(bad)


# --- built here, read here: each frame's shape is written once (the server builds with these) ---

T = "2024-01-01T09:00:00.000Z"


def sent(message: dict[str, Any]) -> Frame:
    """Read back as the server sends it: JSON text, non-ASCII as it is."""
    return parse_frame(json.dumps(message, ensure_ascii=False))


def test_the_frames_a_candidate_gets_read_back_as_built() -> None:
    welcome = welcome_message(
        "S1",
        "candidate",
        "P",
        T,
        ping_interval=10.0,
        ping_timeout=5.0,
        features=("save", "sync_state"),
        position="4-0",
    )
    assert sent(welcome) == Welcome(
        "S1", "candidate", "P", T, frozenset({"save", "sync_state"}), "4-0"
    )
    resuming = welcome_message(
        "S1", "candidate", "P", T, ping_interval=10, ping_timeout=5, features=(), resume=True
    )
    assert "position" not in resuming
    assert sent(resuming) == Welcome("S1", "candidate", "P", T, frozenset())
    assert sent(ping_message(5)) == Ping(5)
    assert parse_frame(ping_frame(5)) == Ping(5)
    assert sent(pong_message("x", T)) == Pong("x") == parse_frame(pong_frame("x"))
    assert sent(exam_end_message("P", T)) == ExamEnded("P", EXAM_END_MESSAGE, T)
    stage = stage_changed_message("P", {"stageId": "S2", "stageDeadline": T}, T, "C1")
    assert sent(stage) == StageChanged("P", T, stage)
    assert sent(resumed_message("9-1", 3)) == Resumed("9-1", 3)
    assert sent(reload_state_message("position_unknown", None)) == ReloadState(
        "position_unknown", None
    )


def test_an_error_frame_reads_back_as_the_http_error_it_stands_for() -> None:
    body = {"error": {"code": "too_many_saves", "message": "wait", "details": {"retryAfter": 1}}}
    plain = error_message(body)
    assert sent(plain) == ErrorFrame(None, 0, plain)
    answering = error_message(body, "7", 429)
    frame = sent(answering)
    assert frame == ErrorFrame("7", 429, answering)
    assert isinstance(frame, ErrorFrame)
    error = parse_error(frame.status, dict(frame.body))
    assert (type(error), error.code, error.details) == (
        RateLimitedError,
        "too_many_saves",
        {"retryAfter": 1},
    )


def test_a_save_ack_frame_carries_the_ack_unchanged() -> None:
    ack = SaveAck({"Q1": AnswerResult(AckStatus.SUPERSEDED, 1, 3, None, "kept", T)}, T)
    frame = parse_frame(save_ack_frame("7", canonical_json(ack.to_wire())))
    assert isinstance(frame, SaveAckFrame) and frame.request_id == "7"
    assert SaveAck.from_wire(frame.body) == ack
    assert parse_frame(save_ack_frame("8", b"{}")) == SaveAckFrame(
        "8", {"type": "save_ack", "id": "8"}
    )


def test_the_supervisors_events_pass_through_as_built() -> None:
    for message in (
        examinee_connection_message(
            "P", "E1", "G1", "S1", "CONNECTED", T, client_info={"transport": "socket"}
        ),
        examinee_connection_message("P", "E1", None, "S1", "DISCONNECTED", T, reason="PING"),
        examinee_lost_message("P", "E1", "G1", T, T, 30.0),
        dead_letter_alert_message("P", "E1", "exam_queue:P:answers", "1-0", "boom", T),
    ):
        assert sent(message) == UnknownFrame(message["type"], message)
    connected, disconnected = (
        examinee_connection_message("P", "E", None, "S", status, T)["type"]
        for status in ("CONNECTED", "DISCONNECTED")
    )
    assert (connected, disconnected) == ("examinee_connected", "examinee_disconnected")


def test_key_order_is_part_of_the_shape() -> None:
    """Frames are compared and logged as text: the keys come in the order the seeds show."""
    assert json.dumps(exam_end_message("P", T), ensure_ascii=False) == (
        '{"type": "exam_end", "message": "시험이 종료되었습니다.", '
        f'"timestamp": "{T}", "planId": "P"}}'
    )
    assert list(pong_message(1, T)) == ["type", "ts", "serverTime"]
    assert list(error_message({"error": {}}, "7", 400)) == ["type", "error", "id", "status"]
    assert list(dead_letter_alert_message("P", "C", "s", "1-0", "e", T)) == [
        "type",
        "planId",
        "candidateId",
        "stream",
        "messageId",
        "error",
        "timestamp",
        "kind",
    ]
    welcome = welcome_message(
        "S", "candidate", "P", T, ping_interval=1, ping_timeout=1, features=[], position=None
    )
    assert list(welcome)[-1] == "position" and welcome["position"] is None


def test_the_auth_frame_reads_back_as_built_and_anything_else_is_refused() -> None:
    assert json.loads(auth_frame("t0k")) == {"type": "auth", "token": "t0k"}
    assert read_auth(auth_frame("t0k")) == Auth("t0k")
    assert read_auth(auth_frame("t0k", "5-0").encode()) == Auth("t0k", "5-0")
    for wrong in (
        "not json",
        "[1]",
        '{"type": "ping"}',
        '{"type": "auth"}',
        '{"type": "auth", "token": ""}',
        '{"type": "auth", "token": 7}',
        '{"type": "auth", "token": "t", "lastPosition": 5}',
    ):
        with pytest.raises(RemoteProtocolError):
            read_auth(wrong)


def test_a_refused_auth_frame_is_an_error_frame_with_its_http_status() -> None:
    body = {"error": {"code": "token_expired", "message": "log in again", "details": {}}}
    frame = parse_frame(json.dumps(auth_refused_message(body, 401)))
    assert frame == ErrorFrame(None, 401, {"type": "error", **body, "status": 401})
