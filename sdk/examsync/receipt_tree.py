"""Receipts signed a batch at a time: a hash tree over the receipts, one signature on its root.

An Ed25519 signature costs the server more than the rest of a save's commit, so a batch of
hundreds of answers is signed once. Each receipt then carries its proof: the sibling hashes
from its leaf to the root. Anyone holding one receipt checks it alone: hash the payload into a
leaf, fold the proof into the root, verify the signature over the root statement. A receipt
without a proof is signed over its payload directly (the first format, still accepted).

Hashes (RFC 6962 style, so a leaf can never pass for an inner node):
    leaf = SHA-256(0x00 || canonical JSON of the payload)
    node = SHA-256(0x01 || left || right)
An odd node at the end of a level moves up unchanged. The signed bytes are the canonical JSON
of ``{"receiptTreeRoot": <hex>}``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from .protocol import canonical_json

__all__ = ["ProofStep", "build", "leaf_hash", "root_statement", "root_from_proof"]

# (side of the sibling: "L" or "R", the sibling's hash)
ProofStep = tuple[str, bytes]


def leaf_hash(payload_bytes: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + payload_bytes).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_proof(leaf: bytes, proof: Sequence[ProofStep]) -> bytes:
    node = leaf
    for side, sibling in proof:
        node = _node(sibling, node) if side == "L" else _node(node, sibling)
    return node


def root_statement(root: bytes) -> bytes:
    """The bytes the batch's signature is over."""
    return canonical_json({"receiptTreeRoot": root.hex()})


def build(leaves: Sequence[bytes]) -> tuple[bytes, list[list[ProofStep]]]:
    """The root over ``leaves`` (at least one) and each leaf's proof, in order."""
    if not leaves:
        raise ValueError("a receipt tree needs at least one leaf")
    proofs: list[list[ProofStep]] = [[] for _ in leaves]
    # Each entry: the node's hash and the leaves under it.
    level: list[tuple[bytes, list[int]]] = [(leaf, [i]) for i, leaf in enumerate(leaves)]
    while len(level) > 1:
        above = []
        for i in range(0, len(level) - 1, 2):
            (left, under_left), (right, under_right) = level[i], level[i + 1]
            for leaf in under_left:
                proofs[leaf].append(("R", right))
            for leaf in under_right:
                proofs[leaf].append(("L", left))
            above.append((_node(left, right), under_left + under_right))
        if len(level) % 2:
            above.append(level[-1])
        level = above
    return level[0][0], proofs
