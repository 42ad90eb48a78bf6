"""The known-answer receipts (receipt_vectors.py) against the cryptography verifier.

tests/pyodide/suite/test_pyodide_receipts.py runs the same vectors through WebCrypto: both
verifiers are held to the same expected verdicts.
"""

from __future__ import annotations

import json

import pytest
from receipt_vectors import PATH, render

from examsync.cpython.receipts import Ed25519Verifier
from examsync.exceptions import ReceiptError
from examsync.messages import Receipt
from examsync.receipts import ReceiptKeys, parse_public_keys

VECTORS = json.loads(PATH.read_text(encoding="utf-8"))


def test_the_committed_vectors_are_what_the_generator_makes() -> None:
    assert PATH.read_text(encoding="utf-8") == render()


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
async def test_cryptography_gives_the_expected_verdict(case: dict[str, object]) -> None:
    verifier = ReceiptKeys(parse_public_keys(VECTORS), Ed25519Verifier())
    receipt = Receipt.from_wire(case["receipt"])
    if case["expected"] == "valid":
        await verifier.verify(str(case["quizCode"]), receipt)
        return
    with pytest.raises(ReceiptError) as info:
        await verifier.verify(str(case["quizCode"]), receipt)
    unknown = "unknown receipt key" in str(info.value)
    assert unknown == (case["expected"] == "unknown_key")
