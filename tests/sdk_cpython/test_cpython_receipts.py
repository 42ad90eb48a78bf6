"""Ed25519 receipt verification with cryptography (examsync.cpython.receipts) under the core's
rules (examsync.receipts.ReceiptKeys)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from cpython_fakes import FakeApi, raw_public
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from examsync.cpython.receipts import Ed25519Verifier, cryptography_available
from examsync.exceptions import ReceiptError
from examsync.messages import Receipt
from examsync.receipts import ReceiptKeys, ReceiptVerifier


def signed() -> tuple[FakeApi, Receipt, ReceiptKeys]:
    api = FakeApi()
    receipt = api.sign("Q1", "정답 ①", 2)
    return api, receipt, ReceiptKeys({api.key_id: raw_public(api.key)}, Ed25519Verifier())


async def test_a_genuine_receipt_verifies() -> None:
    _, receipt, verifier = signed()
    await verifier.verify("Q1", receipt)
    assert isinstance(Ed25519Verifier(), ReceiptVerifier)
    assert cryptography_available()


async def test_a_tampered_payload_is_rejected() -> None:
    _, receipt, verifier = signed()
    forged = replace(receipt, payload=replace(receipt.payload, version=3))
    with pytest.raises(ReceiptError) as info:
        await verifier.verify("Q1", forged)
    assert (info.value.quiz_code, info.value.key_id) == ("Q1", "k1")


async def test_a_tampered_signature_is_rejected() -> None:
    api = FakeApi(tamper=True)
    verifier = ReceiptKeys({api.key_id: raw_public(api.key)}, Ed25519Verifier())
    with pytest.raises(ReceiptError):
        await verifier.verify("Q1", api.sign("Q1", "a", 1))


async def test_another_key_or_an_unknown_key_id_is_rejected() -> None:
    _, receipt, _ = signed()
    other = ReceiptKeys({"k1": raw_public(Ed25519PrivateKey.generate())}, Ed25519Verifier())
    with pytest.raises(ReceiptError):
        await other.verify("Q1", receipt)
    assert not other.knows("k2")
    with pytest.raises(ReceiptError, match="unknown receipt key"):
        await other.verify("Q1", replace(receipt, key_id="k2"))


async def test_the_signature_check_alone() -> None:
    """What the adapter brings: a yes or no on raw Ed25519, with each key loaded once."""
    key = Ed25519PrivateKey.generate()
    check = Ed25519Verifier()
    signature = key.sign(b"statement")
    assert await check.verify_signature(raw_public(key), signature, b"statement")
    assert not await check.verify_signature(raw_public(key), signature, b"statement!")
    other = raw_public(Ed25519PrivateKey.generate())
    assert not await check.verify_signature(other, signature, b"statement")
    assert len(check._keys) == 2
