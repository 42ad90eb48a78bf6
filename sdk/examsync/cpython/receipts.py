"""The Ed25519 check of receipts with ``cryptography`` (optional: only this module needs it).

``cryptography`` is imported when a verifier is built, not when ``examsync.cpython`` is, so a
client that turns verification off runs without it. The rules around the check (known key ids,
what is signed) are the core's: :class:`examsync.receipts.ReceiptKeys`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..exceptions import ExamSyncError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = ["Ed25519Verifier", "cryptography_available"]


def cryptography_available() -> bool:
    try:
        import cryptography.hazmat.primitives.asymmetric.ed25519  # noqa: F401
    except ImportError:
        return False
    return True


class Ed25519Verifier:
    """:class:`examsync.receipts.ReceiptVerifier` with ``cryptography``; keys are loaded once."""

    def __init__(self) -> None:
        try:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        except ImportError as exc:
            raise ExamSyncError(
                "verifying receipts needs the 'cryptography' package: install it, or turn"
                " receipt verification off"
            ) from exc
        self._load = Ed25519PublicKey.from_public_bytes
        self._keys: dict[bytes, Ed25519PublicKey] = {}

    async def verify_signature(self, public_key: bytes, signature: bytes, message: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature

        key = self._keys.get(public_key)
        if key is None:
            key = self._keys[public_key] = self._load(public_key)
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return False
        return True
