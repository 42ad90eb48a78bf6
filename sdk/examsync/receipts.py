"""Receipts: what the server signs for each answer it committed, and how one is verified
(docs/protocol.md).

A receipt is the payload (plan, candidate, exam code, quiz code, version, the value's SHA-256,
the server time), the key id, the Ed25519 signature, and, when the server signed a batch at a
time, the proof from this receipt to the signed root (the hash tree below).

The rules a receipt is held to are written here once: it must be for the answer that was sent
(:meth:`ReceiptPayload.is_for`), its key id must be one of the server's published keys
(``GET /api/v1/keys``, :func:`parse_public_keys`), and its signature must verify over
:meth:`Receipt.signed_bytes` (:class:`ReceiptKeys`). The signature check itself needs Ed25519,
which the standard library lacks: each adapter brings a :class:`ReceiptVerifier` that does only
that (``cryptography`` on CPython, WebCrypto in the browser).

A batch is signed once (an Ed25519 signature costs the server more than the rest of a save's
commit): a hash tree over its receipts, one signature on its root. Each receipt then carries
its proof, the sibling hashes from its leaf to the root, so anyone holding one receipt checks
it alone: hash the payload into a leaf, fold the proof into the root, verify the signature
over the root statement. A receipt without a proof is signed over its payload directly (the
first format, still accepted).

Hashes (RFC 6962 style, so a leaf can never pass for an inner node):
    leaf = SHA-256(0x00 || canonical JSON of the payload)
    node = SHA-256(0x01 || left || right)
An odd node at the end of a level moves up unchanged. The signed bytes are the canonical JSON
of ``{"receiptTreeRoot": <hex>}``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ._validate import frozen_map, get_int, get_object, get_str, get_timestamp, require_object
from .exceptions import ReceiptError, RemoteProtocolError
from .protocol import b64url_decode, b64url_encode, canonical_json, decode_json, value_sha256

if TYPE_CHECKING:
    from .messages import SaveAck

__all__ = [
    "ProofStep",
    "Receipt",
    "ReceiptKeys",
    "ReceiptPayload",
    "ReceiptVerifier",
    "build",
    "leaf_hash",
    "parse_public_keys",
    "receipts_in",
    "root_from_proof",
    "root_statement",
]

_HEX = frozenset("0123456789abcdef")


# -- the hash tree of a batch ---------------------------------------------------------------

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


# -- receipts -------------------------------------------------------------------------------
ED25519_PUBLIC_KEY_BYTES = 32


# --- the receipt on the wire ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceiptPayload:
    """What a receipt's signature covers (the canonical JSON of ``to_wire()``)."""

    plan_id: str
    candidate_id: str
    exam_code: str
    quiz_code: str
    version: int
    value_sha256: str
    server_time: str

    def is_for(
        self,
        plan_id: str,
        candidate_id: str,
        exam_code: str,
        quiz_code: str,
        version: int,
        value: str,
    ) -> bool:
        """Whether this signs exactly ``value`` kept as ``version`` of this answer (the sent
        value, or a superseded answer's ``currentValue``, at the ack's ``currentVersion``)."""
        return (
            self.plan_id,
            self.candidate_id,
            self.exam_code,
            self.quiz_code,
            self.version,
            self.value_sha256,
        ) == (plan_id, candidate_id, exam_code, quiz_code, version, value_sha256(value))

    def to_wire(self) -> dict[str, Any]:
        return {
            "planId": self.plan_id,
            "candidateId": self.candidate_id,
            "examCode": self.exam_code,
            "quizCode": self.quiz_code,
            "version": self.version,
            "valueSha256": self.value_sha256,
            "serverTime": self.server_time,
        }

    @classmethod
    def from_wire(cls, obj: object, path: str) -> ReceiptPayload:
        m = require_object(obj, path)
        # The signature covers the payload byte for byte, so a field we would drop on the way
        # through to_wire() would make every signature fail to verify: refuse it plainly.
        unknown = sorted(set(m) - set(_RECEIPT_FIELDS))
        if unknown:
            raise RemoteProtocolError(f"unknown receipt fields {unknown}", path=path)
        digest = get_str(m, "valueSha256", path)
        if len(digest) != 64 or not set(digest) <= _HEX:
            raise RemoteProtocolError("not a lowercase SHA-256 hex", path=f"{path}.valueSha256")
        return cls(
            plan_id=get_str(m, "planId", path),
            candidate_id=get_str(m, "candidateId", path),
            exam_code=get_str(m, "examCode", path),
            quiz_code=get_str(m, "quizCode", path),
            version=get_int(m, "version", path, minimum=1),
            value_sha256=digest,
            server_time=get_timestamp(m, "serverTime", path),
        )


_RECEIPT_FIELDS = (
    "planId",
    "candidateId",
    "examCode",
    "quizCode",
    "version",
    "valueSha256",
    "serverTime",
)


@dataclass(frozen=True, slots=True)
class Receipt:
    """The server's signed statement that it committed one answer version.

    The core checks shape and content; :class:`ReceiptKeys` checks ``signature`` against the
    server's public keys.
    """

    key_id: str
    payload: ReceiptPayload
    signature: bytes
    alg: str = "Ed25519"
    # Signed a batch at a time (the hash tree below): the path from this receipt to the signed root.
    proof: tuple[ProofStep, ...] | None = None

    def signed_bytes(self) -> bytes:
        """The exact bytes the signature is over."""
        payload = canonical_json(self.payload.to_wire())
        if self.proof is None:
            return payload
        return root_statement(root_from_proof(leaf_hash(payload), self.proof))

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "keyId": self.key_id,
            "alg": self.alg,
            "payload": self.payload.to_wire(),
            "signature": _encoded(self.signature),
        }
        if self.proof is not None:
            wire["proof"] = [[side, _encoded(sibling)] for side, sibling in self.proof]
        return wire

    @classmethod
    def from_wire(cls, obj: object, path: str = "receipt") -> Receipt:
        m = require_object(obj, path)
        alg = get_str(m, "alg", path)
        if alg != "Ed25519":
            raise RemoteProtocolError(f"unsupported algorithm {alg!r}", path=f"{path}.alg")
        signature = b64url_decode(get_str(m, "signature", path))
        if len(signature) != 64:
            raise RemoteProtocolError("an Ed25519 signature is 64 bytes", path=f"{path}.signature")
        return cls(
            key_id=get_str(m, "keyId", path),
            payload=ReceiptPayload.from_wire(get_object(m, "payload", path), f"{path}.payload"),
            signature=signature,
            alg=alg,
            proof=_proof(m.get("proof"), f"{path}.proof"),
        )


@lru_cache(maxsize=4096)
def _encoded(raw: bytes) -> str:
    """base64url of a signature or a hash, remembered: a batch's receipts share one signature
    and most of their proof (an inner node is in the proof of every leaf beside it), so each
    is encoded once, not once per receipt."""
    return b64url_encode(raw)


def _proof(obj: object, path: str) -> tuple[ProofStep, ...] | None:
    if obj is None:
        return None
    if not isinstance(obj, list) or len(obj) > 64:
        raise RemoteProtocolError("a proof is a list of at most 64 steps", path=path)
    steps = []
    for step in obj:
        if not (
            isinstance(step, list)
            and len(step) == 2
            and step[0] in ("L", "R")
            and isinstance(step[1], str)
        ):
            raise RemoteProtocolError('a proof step is ["L" or "R", base64url]', path=path)
        sibling = b64url_decode(step[1])
        if len(sibling) != 32:
            raise RemoteProtocolError("a proof hash is 32 bytes", path=path)
        steps.append((step[0], sibling))
    return tuple(steps)


def receipts_in(ack: SaveAck) -> dict[str, Receipt]:
    """The receipts an ack carries, by question code (what a verifier must check)."""
    return {code: r.receipt for code, r in ack.results.items() if r.receipt is not None}


# --- verifying ------------------------------------------------------------------------------------


def parse_public_keys(body: object) -> Mapping[str, bytes]:
    """``{"keys": {"<keyId>": "<base64url raw 32-byte Ed25519 public key>"}}`` → raw keys by id.

    ``body`` is the raw bytes/str or the decoded JSON. Raises RemoteProtocolError if malformed.
    """
    decoded = decode_json(body) if isinstance(body, bytes | str) else body
    keys = get_object(require_object(decoded, ""), "keys", "")
    result: dict[str, bytes] = {}
    for key_id, encoded in keys.items():
        if not isinstance(encoded, str):
            raise RemoteProtocolError("expected a base64url string", path=f"keys.{key_id}")
        raw = b64url_decode(encoded)
        if len(raw) != ED25519_PUBLIC_KEY_BYTES:
            raise RemoteProtocolError("an Ed25519 public key is 32 bytes", path=f"keys.{key_id}")
        result[key_id] = raw
    return frozen_map(result)


@runtime_checkable
class ReceiptVerifier(Protocol):
    """An Ed25519 signature check: all an adapter brings to verifying receipts."""

    async def verify_signature(self, public_key: bytes, signature: bytes, message: bytes) -> bool:
        """Whether ``signature`` over ``message`` is ``public_key``'s (raw, 32 bytes).

        Raise ExamSyncError only when the check cannot be made at all (no Ed25519 here).
        """
        ...


class ReceiptKeys:
    """The server's published receipt keys (raw 32-byte keys by key id), and the rules a
    receipt's signature is held to, with an adapter's :class:`ReceiptVerifier` doing the
    Ed25519 arithmetic."""

    def __init__(self, keys: Mapping[str, bytes], verifier: ReceiptVerifier) -> None:
        self._keys = dict(keys)
        self._verifier = verifier

    def knows(self, key_id: str) -> bool:
        return key_id in self._keys

    async def verify(self, quiz_code: str, receipt: Receipt) -> None:
        """Return if the signature verifies; raise ReceiptError otherwise (unknown key too)."""
        key = self._keys.get(receipt.key_id)
        if key is None:
            raise ReceiptError(
                f"unknown receipt key {receipt.key_id!r}",
                quiz_code=quiz_code,
                key_id=receipt.key_id,
            )
        if not await self._verifier.verify_signature(
            key, receipt.signature, receipt.signed_bytes()
        ):
            raise ReceiptError(
                "receipt signature does not verify", quiz_code=quiz_code, key_id=receipt.key_id
            )

    async def verify_many(self, receipts: Mapping[str, Receipt]) -> None:
        """:meth:`verify` each, by question code; the first that fails raises."""
        for quiz_code, receipt in receipts.items():
            await self.verify(quiz_code, receipt)
