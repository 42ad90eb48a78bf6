"""Signed save receipts: Ed25519 over the canonical JSON of what was committed (docs/protocol.md).

Keys live in the data dir (`receipt_keys/`, mode 0600) so every process sharing it signs with
the same key; the newest key signs, and every key stays published at `GET /api/v1/keys`, so a
receipt signed before a rotation still verifies.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from examsync.messages import Receipt, ReceiptPayload
from examsync.protocol import b64url_encode, canonical_json
from examsync.receipts import build, leaf_hash, root_statement

from ..base import fast_json
from ..base.private import private_dir


def _raw_public(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def _read_keys(directory: Path) -> tuple[dict[str, Ed25519PrivateKey], str]:
    """Every key in the directory by key id, and the id of the newest."""
    keys: dict[str, Ed25519PrivateKey] = {}
    newest = ""
    for path in sorted(directory.glob("*.pem")):  # names start with their creation time
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if isinstance(private, Ed25519PrivateKey):
            newest = "k" + hashlib.sha256(_raw_public(private)).hexdigest()[:16]
            keys[newest] = private
    return keys, newest


@dataclass
class ReceiptSigner:
    keys: dict[str, Ed25519PrivateKey]
    current: str
    directory: Path

    @classmethod
    def load(cls, directory: Path) -> ReceiptSigner:
        """Every key in `directory`; a first key is made when there is none.

        A lock file keeps two processes starting together from making a key each.
        """
        private_dir(directory)
        with open(directory / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not any(directory.glob("*.pem")):
                rotate(directory)
        keys, current = _read_keys(directory)
        return cls(keys, current, directory)

    def sign(self, payload: ReceiptPayload) -> Receipt:
        signature = self.keys[self.current].sign(canonical_json(payload.to_wire()))
        return Receipt(key_id=self.current, payload=payload, signature=signature)

    def sign_many(self, payloads: list[ReceiptPayload]) -> list[Receipt]:
        """One signature for them all, over the root of a hash tree of their payloads; each
        receipt carries its proof, so it still verifies alone (examsync.receipts)."""
        if not payloads:
            return []
        # orjson's canonical bytes: the same as canonical_json's for strings and integers,
        # all a receipt's payload holds (tests/server/test_fast_json.py).
        leaves = [leaf_hash(fast_json.canonical(p.to_wire())) for p in payloads]
        root, proofs = build(leaves)
        signature = self.keys[self.current].sign(root_statement(root))
        return [
            Receipt(self.current, payload, signature, proof=tuple(proof))
            for payload, proof in zip(payloads, proofs, strict=True)
        ]

    def public_keys(self) -> dict[str, str]:
        """`{keyId: base64url raw 32-byte public key}` for `GET /api/v1/keys`.

        Read afresh, so a key another process rotated in is published here too.
        """
        on_disk, _ = _read_keys(self.directory)
        return {
            key_id: b64url_encode(_raw_public(private))
            for key_id, private in {**on_disk, **self.keys}.items()
        }


def rotate(directory: Path) -> None:
    """Add a new signing key (used by processes started after it); older keys stay published."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    name = f"{time.time_ns():020d}-{secrets.token_hex(4)}.pem"
    fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
