"""Receipts (examsync.receipts): the key set of GET /api/v1/keys and the rules a receipt is
held to."""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest

from examsync.exceptions import ReceiptError, RemoteProtocolError
from examsync.messages import AckStatus, AnswerResult, Receipt, ReceiptPayload, SaveAck
from examsync.protocol import b64url_encode, value_sha256
from examsync.receipts import ReceiptKeys, ReceiptVerifier, parse_public_keys, receipts_in

T = "2024-01-01T00:00:00Z"


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


def finish(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that never waits to its end without an event loop: these tests run in
    Pyodide too, where the loop is always running."""
    try:
        coro.send(None)
    except StopIteration:
        return
    raise AssertionError("the coroutine waited")


@dataclass
class Answers:
    """A stand-in Ed25519 (a seam we own): says what it is told, notes what it was asked."""

    valid: bool = True
    asked: list[tuple[bytes, bytes, bytes]] = field(default_factory=list)

    async def verify_signature(self, public_key: bytes, signature: bytes, message: bytes) -> bool:
        self.asked.append((public_key, signature, message))
        return self.valid


def a_receipt(quiz_code: str = "Q1", key_id: str = "k1") -> Receipt:
    payload = ReceiptPayload("P", "C", "E", quiz_code, 1, value_sha256("a"), T)
    return Receipt(key_id, payload, bytes(64))


def test_a_receipt_is_checked_with_its_key_over_its_signed_bytes() -> None:
    check = Answers()
    assert isinstance(check, ReceiptVerifier)
    keys = ReceiptKeys({"k1": b"1" * 32, "k2": b"2" * 32}, check)
    receipt = a_receipt()
    finish(keys.verify("Q1", receipt))
    assert check.asked == [(b"1" * 32, bytes(64), receipt.signed_bytes())]


def test_an_unknown_key_or_a_bad_signature_is_a_receipt_error() -> None:
    check = Answers(valid=False)
    keys = ReceiptKeys({"k1": b"1" * 32}, check)
    assert keys.knows("k1") and not keys.knows("k9")
    with pytest.raises(ReceiptError, match="unknown receipt key") as unknown:
        finish(keys.verify("Q7", a_receipt(key_id="k9")))
    assert (unknown.value.quiz_code, unknown.value.key_id, check.asked) == ("Q7", "k9", [])
    with pytest.raises(ReceiptError, match="does not verify") as bad:
        finish(keys.verify("Q1", a_receipt()))
    assert (bad.value.quiz_code, bad.value.key_id) == ("Q1", "k1")


def test_verify_many_stops_at_the_first_that_fails() -> None:
    check = Answers()
    keys = ReceiptKeys({"k1": b"1" * 32}, check)
    finish(keys.verify_many({"Q1": a_receipt("Q1"), "Q2": a_receipt("Q2")}))
    assert len(check.asked) == 2
    with pytest.raises(ReceiptError) as info:
        finish(keys.verify_many({"Q3": a_receipt("Q3", "k9"), "Q4": a_receipt("Q4")}))
    assert info.value.quiz_code == "Q3" and len(check.asked) == 2


def test_a_receipt_is_for_exactly_the_answer_sent() -> None:
    payload = a_receipt().payload
    assert payload.is_for("P", "C", "E", "Q1", 1, "a")
    for other in (
        ("X", "C", "E", "Q1", 1, "a"),
        ("P", "X", "E", "Q1", 1, "a"),
        ("P", "C", "X", "Q1", 1, "a"),
        ("P", "C", "E", "Q2", 1, "a"),
        ("P", "C", "E", "Q1", 2, "a"),
        ("P", "C", "E", "Q1", 1, "b"),
    ):
        assert not payload.is_for(*other)
