"""WebCryptoVerifier, under the core's rules (ReceiptKeys), against receipts signed on the
CPython side (receipt_vectors.json).

The same vectors go through the cryptography verifier in
tests/sdk_cpython/test_cpython_receipt_vectors.py: both must give every case its verdict.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from examsync.exceptions import ReceiptError
from examsync.messages import Receipt
from examsync.pyodide import WebCryptoVerifier, webcrypto_ed25519_available
from examsync.receipts import ReceiptKeys, parse_public_keys

VECTORS = json.loads((Path(__file__).parent / "receipt_vectors.json").read_text("utf-8"))


def verifier() -> ReceiptKeys:
    return ReceiptKeys(parse_public_keys(VECTORS), WebCryptoVerifier())


async def test_node_webcrypto_has_ed25519() -> None:
    assert await webcrypto_ed25519_available()


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
async def test_webcrypto_gives_the_expected_verdict(case: dict[str, Any]) -> None:
    receipt = Receipt.from_wire(case["receipt"])
    if case["expected"] == "valid":
        await verifier().verify(case["quizCode"], receipt)
        return
    with pytest.raises(ReceiptError) as info:
        await verifier().verify(case["quizCode"], receipt)
    assert info.value.quiz_code == case["quizCode"]
    assert ("unknown receipt key" in str(info.value)) == (case["expected"] == "unknown_key")


async def test_verify_many_stops_at_the_first_bad_receipt_and_keys_are_reused() -> None:
    cases = {c["name"]: Receipt.from_wire(c["receipt"]) for c in VECTORS["cases"]}
    v = verifier()
    assert v.knows("kvectors") and not v.knows("kunknown")
    await v.verify_many({"Q001": cases["genuine"], "Q002": cases["genuine, long value"]})
    with pytest.raises(ReceiptError):
        await v.verify_many({"Q001": cases["genuine"], "Q009": cases["one signature bit flipped"]})
