"""Socket frames: parsing what the server sends, building what we send (examsync.frames)."""

from __future__ import annotations

import json

import pytest

from examsync.exceptions import RemoteProtocolError
from examsync.frames import (
    ErrorFrame,
    ExamEnded,
    Ping,
    ReloadState,
    Resumed,
    SaveAckFrame,
    StageChanged,
    UnknownFrame,
    Welcome,
    parse_frame,
    parse_poll,
    ping_frame,
    pong_frame,
    position_of,
    save_frame,
)
from examsync.messages import parse_error
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
