"""Ed25519 receipt verification with cryptography (examsync.cpython.receipts)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from cpython_fakes import FakeApi, raw_public
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from examsync.cpython.receipts import Ed25519Verifier, cryptography_available
from examsync.exceptions import ReceiptError
from examsync.messages import Receipt
from examsync.receipts import ReceiptVerifier


def signed() -> tuple[FakeApi, Receipt, Ed25519Verifier]:
    api = FakeApi()
    receipt = api.sign("Q1", "정답 ①", 2)
    return api, receipt, Ed25519Verifier({api.key_id: raw_public(api.key)})


def test_a_genuine_receipt_verifies() -> None:
    _, receipt, verifier = signed()
    verifier.verify("Q1", receipt)
    assert isinstance(verifier, ReceiptVerifier)
    assert cryptography_available()


def test_a_tampered_payload_is_rejected() -> None:
    _, receipt, verifier = signed()
    forged = replace(receipt, payload=replace(receipt.payload, version=3))
    with pytest.raises(ReceiptError) as info:
        verifier.verify("Q1", forged)
    assert (info.value.quiz_code, info.value.key_id) == ("Q1", "k1")


def test_a_tampered_signature_is_rejected() -> None:
    api = FakeApi(tamper=True)
    verifier = Ed25519Verifier({api.key_id: raw_public(api.key)})
    with pytest.raises(ReceiptError):
        verifier.verify("Q1", api.sign("Q1", "a", 1))


def test_another_key_or_an_unknown_key_id_is_rejected() -> None:
    _, receipt, _ = signed()
    other = Ed25519Verifier({"k1": raw_public(Ed25519PrivateKey.generate())})
    with pytest.raises(ReceiptError):
        other.verify("Q1", receipt)
    assert not other.knows("k2")
    with pytest.raises(ReceiptError, match="unknown receipt key"):
        other.verify("Q1", replace(receipt, key_id="k2"))
