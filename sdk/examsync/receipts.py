"""The server's receipt keys (``GET /api/v1/keys``) and the verifier interface.

The signature check itself needs Ed25519, which the standard library lacks: the adapters bring
it (``cryptography`` on CPython, WebCrypto in the browser) behind :class:`ReceiptVerifier`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from ._validate import frozen_map, get_object, require_object
from .exceptions import RemoteProtocolError
from .messages import Receipt, SaveAck
from .protocol import b64url_decode, decode_json

__all__ = ["ReceiptVerifier", "parse_public_keys", "receipts_in"]

ED25519_PUBLIC_KEY_BYTES = 32


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


def receipts_in(ack: SaveAck) -> dict[str, Receipt]:
    """The receipts an ack carries, by question code (what a verifier must check)."""
    return {code: r.receipt for code, r in ack.results.items() if r.receipt is not None}


@runtime_checkable
class ReceiptVerifier(Protocol):
    """Checks a receipt's signature against the server's published keys."""

    def verify(self, quiz_code: str, receipt: Receipt) -> None:
        """Return if the signature verifies; raise ReceiptError otherwise (unknown key too)."""
        ...
