"""Receipts on the wire: what the server signs for each answer it committed (docs/protocol.md).

A receipt is the payload (plan, candidate, exam code, quiz code, version, the value's SHA-256,
the server time), the key id, the Ed25519 signature, and, when the server signed a batch at a
time, the proof from this receipt to the signed root (receipt_tree.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ._validate import get_int, get_object, get_str, get_timestamp, require_object
from .exceptions import RemoteProtocolError
from .protocol import b64url_decode, b64url_encode, canonical_json
from .receipt_tree import ProofStep, leaf_hash, root_from_proof, root_statement

_HEX = frozenset("0123456789abcdef")


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

    The core checks shape and content; verifying ``signature`` against the server's public key
    (``GET /api/v1/keys``) is the adapters' job (``cryptography``, WebCrypto).
    """

    key_id: str
    payload: ReceiptPayload
    signature: bytes
    alg: str = "Ed25519"
    # Signed a batch at a time (receipt_tree.py): the path from this receipt to the signed root.
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
