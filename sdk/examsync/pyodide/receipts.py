"""The Ed25519 check of receipts with the browser's WebCrypto (``crypto.subtle``).

Same inputs, same verdicts as :class:`examsync.cpython.receipts.Ed25519Verifier` (a shared
known-answer vector pins both: tests/pyodide/suite/receipt_vectors.json); the rules around the
check are the core's (:class:`examsync.receipts.ReceiptKeys`). WebCrypto is asynchronous, as
:meth:`~examsync.receipts.ReceiptVerifier.verify_signature` is.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import ExamSyncError
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
    """:class:`examsync.receipts.ReceiptVerifier` with WebCrypto; each key is imported into
    WebCrypto on first use and kept."""

    def __init__(self) -> None:
        self._imported: dict[bytes, Any] = {}

    async def verify_signature(self, public_key: bytes, signature: bytes, message: bytes) -> bool:
        try:
            key = self._imported.get(public_key)
            if key is None:
                key = self._imported[public_key] = await _import_key(public_key)
            valid = await _subtle().verify(
                js_object(name="Ed25519"), key, to_js(signature), to_js(message)
            )
        except JsException as exc:  # no Ed25519 here, or a key WebCrypto refuses
            raise ExamSyncError(f"WebCrypto Ed25519: {error_name(exc)}: {exc}") from exc
        return bool(valid)
