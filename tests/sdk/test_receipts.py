"""The receipt key set of GET /api/v1/keys (examsync.receipts)."""

from __future__ import annotations

import pytest

from examsync.exceptions import RemoteProtocolError
from examsync.messages import AckStatus, AnswerResult, Receipt, ReceiptPayload, SaveAck
from examsync.protocol import b64url_encode, value_sha256
from examsync.receipts import parse_public_keys, receipts_in


def test_keys_are_raw_32_byte_ed25519_keys_by_id() -> None:
    keys = parse_public_keys(
        f'{{"keys": {{"k1": "{b64url_encode(bytes(32))}", "k2": "{b64url_encode(b"x" * 32)}"}}}}'
    )
    assert dict(keys) == {"k1": bytes(32), "k2": b"x" * 32}
    assert parse_public_keys({"keys": {}}) == {}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"keys": []},
        {"keys": {"k1": 5}},
        {"keys": {"k1": b64url_encode(bytes(31))}},
        {"keys": {"k1": "+/+/"}},
        b"not json",
    ],
)
def test_malformed_key_sets_raise(body: object) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_public_keys(body)


def test_receipts_in_an_ack() -> None:
    payload = ReceiptPayload("P", "C", "E", "Q1", 1, value_sha256("a"), "2024-01-01T00:00:00Z")
    receipt = Receipt("k1", payload, bytes(64))
    ack = SaveAck(
        {
            "Q1": AnswerResult(AckStatus.ACCEPTED, 1, 1, receipt),
            "Q2": AnswerResult(AckStatus.SUPERSEDED, 1, 3, None),
        },
        "2024-01-01T00:00:00Z",
    )
    assert receipts_in(ack) == {"Q1": receipt}
