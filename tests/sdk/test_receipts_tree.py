"""Receipts signed a batch at a time: every receipt's proof leads to the one signed root, and
no other payload or proof does."""

from __future__ import annotations

import pytest

from examsync import RemoteProtocolError
from examsync.messages import Receipt, ReceiptPayload
from examsync.protocol import canonical_json
from examsync.receipts import build, leaf_hash, root_from_proof, root_statement

T = "2024-01-15T09:00:00.000Z"


def payload_bytes(p: ReceiptPayload) -> bytes:
    return canonical_json(p.to_wire())


def payload(n: int) -> ReceiptPayload:
    return ReceiptPayload("PLAN202401", "CAND202301", "EXAM202401", f"Q{n:03d}", n, "a" * 64, T)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 100])
def test_every_proof_folds_to_the_root(size: int) -> None:
    leaves = [leaf_hash(f"leaf {i}".encode()) for i in range(size)]
    root, proofs = build(leaves)
    for leaf, proof in zip(leaves, proofs, strict=True):
        assert root_from_proof(leaf, proof) == root
        assert len(proof) <= size.bit_length()


def test_a_receipt_signs_over_the_root_statement_and_round_trips() -> None:
    payloads = [payload(n) for n in range(1, 4)]
    root, proofs = build([leaf_hash(payload_bytes(p)) for p in payloads])
    receipts = [
        Receipt("k1", p, bytes(64), proof=tuple(proof))
        for p, proof in zip(payloads, proofs, strict=True)
    ]
    for receipt in receipts:
        assert receipt.signed_bytes() == root_statement(root)
        assert Receipt.from_wire(receipt.to_wire()) == receipt
    # a changed payload no longer reaches the signed root
    forged = Receipt("k1", payload(9), bytes(64), proof=receipts[0].proof)
    assert forged.signed_bytes() != root_statement(root)
    # without a proof, the signature is over the payload itself (the first format)
    plain = Receipt("k1", payloads[0], bytes(64))
    assert "proof" not in plain.to_wire()
    assert plain.signed_bytes() == payload_bytes(payloads[0])


@pytest.mark.parametrize(
    "proof",
    [
        "L",
        [["X", "A" * 43]],
        [["L", "AAAA"]],
        [["L"]],
        [["L", 5]],
        [["L", "A" * 43]] * 65,
    ],
)
def test_malformed_proofs_are_refused(proof: object) -> None:
    wire = Receipt("k1", payload(1), bytes(64), proof=()).to_wire()
    wire["proof"] = proof
    with pytest.raises(RemoteProtocolError):
        Receipt.from_wire(wire)
