"""Ed25519 receipt verification with the browser's WebCrypto (``crypto.subtle``).

Same inputs, same verdicts as :class:`examsync.cpython.receipts.Ed25519Verifier` (a shared
known-answer vector pins both: tests/pyodide/suite/receipt_vectors.json). WebCrypto is
asynchronous, so :meth:`WebCryptoVerifier.verify` is a coroutine; the client loop awaits
:meth:`~WebCryptoVerifier.verify_many`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..exceptions import ExamSyncError, ReceiptError
from ..messages import Receipt
from ._js import JsException, error_name, js, js_object, to_js

__all__ = ["WebCryptoVerifier", "webcrypto_ed25519_available"]

# An Ed25519 public key (RFC 8032, test 1), only to probe for support.
_PROBE_KEY = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")


def _subtle() -> Any:
    crypto = getattr(js, "crypto", None)
    subtle = getattr(crypto, "subtle", None) if crypto is not None else None
    if subtle is None:  # an insecure context (http:// other than localhost) has no subtle
        raise ExamSyncError("WebCrypto (crypto.subtle) is not available in this context")
    return subtle


async def _import_key(raw: bytes) -> Any:
    return await _subtle().importKey(
        "raw", to_js(raw), js_object(name="Ed25519"), False, to_js(["verify"])
    )


async def webcrypto_ed25519_available() -> bool:
    """Whether this browser's WebCrypto has Ed25519 (Chrome 137+, Firefox 129+, Safari 17+)."""
    try:
        await _import_key(_PROBE_KEY)
    except (JsException, ExamSyncError):
        return False
    return True


class WebCryptoVerifier:
    """Verifies receipts against the server's public keys (raw 32-byte keys by key id).

    Keys are imported into WebCrypto on first use and kept.
    """

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        self._raw = dict(keys)
        self._imported: dict[str, Any] = {}

    def knows(self, key_id: str) -> bool:
        return key_id in self._raw

    async def verify(self, quiz_code: str, receipt: Receipt) -> None:
        """Return if the signature verifies; raise ReceiptError otherwise (unknown key too)."""
        raw = self._raw.get(receipt.key_id)
        if raw is None:
            raise ReceiptError(
                f"unknown receipt key {receipt.key_id!r}",
                quiz_code=quiz_code,
                key_id=receipt.key_id,
            )
        try:
            key = self._imported.get(receipt.key_id)
            if key is None:
                key = self._imported[receipt.key_id] = await _import_key(raw)
            valid = await _subtle().verify(
                js_object(name="Ed25519"),
                key,
                to_js(receipt.signature),
                to_js(receipt.signed_bytes()),
            )
        except JsException as exc:  # no Ed25519 here, or a key WebCrypto refuses
            raise ExamSyncError(f"WebCrypto Ed25519: {error_name(exc)}: {exc}") from exc
        if not valid:
            raise ReceiptError(
                "receipt signature does not verify", quiz_code=quiz_code, key_id=receipt.key_id
            )

    async def verify_many(self, receipts: Mapping[str, Receipt]) -> None:
        for quiz_code, receipt in receipts.items():
            await self.verify(quiz_code, receipt)
