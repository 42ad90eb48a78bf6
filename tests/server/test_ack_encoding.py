"""Acknowledgements travel as the JSON the client receives (acks.py): encoded once by the
persister, split off the channel message and spliced into a socket frame without a decode."""

from __future__ import annotations

import json

from examsync_server.acks import encode_ack, parse_message
from examsync_server.sockets.saves import save_ack_frame

ACK = {"results": {"Q001": {"status": "stored", "version": 3}}, "serverTime": "…", "late": True}


def test_a_channel_message_splits_into_each_requests_ack_unchanged() -> None:
    acks = {"a1b2": encode_ack(ACK), "c3d4": encode_ack({"batchId": "줄\nbreak"})}
    message = b"\n".join(rid.encode() + b" " + ack for rid, ack in acks.items())
    assert parse_message(message) == list(acks.items())
    assert parse_message(message.decode()) == list(acks.items())  # a decoding pub/sub client
    assert json.loads(acks["c3d4"]) == {"batchId": "줄\nbreak"}  # JSON escapes the newline


def test_malformed_lines_are_skipped() -> None:
    assert parse_message(b"\nno-ack\nrid not-json\nok {}") == [("ok", b"{}")]


def test_a_save_ack_frame_is_the_ack_with_type_and_id() -> None:
    frame = json.loads(save_ack_frame("7", encode_ack(ACK)))
    assert frame == {"type": "save_ack", "id": "7", **ACK}
    assert json.loads(save_ack_frame("8", b"{}")) == {"type": "save_ack", "id": "8"}
