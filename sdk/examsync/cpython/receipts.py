"""Ed25519 receipt verification with ``cryptography`` (optional: only this module needs it).

``cryptography`` is imported when a verifier is built, not when ``examsync.cpython`` is, so a
client that turns verification off runs without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..exceptions import ExamSyncError, ReceiptError
from ..messages import Receipt

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
    """Verifies receipts against the server's public keys (raw 32-byte keys by key id).

    Implements :class:`examsync.receipts.ReceiptVerifier`.
    """

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        try:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        except ImportError as exc:
            raise ExamSyncError(
                "verifying receipts needs the 'cryptography' package: install it, or turn"
                " receipt verification off"
            ) from exc
        self._keys: dict[str, Ed25519PublicKey] = {
            key_id: Ed25519PublicKey.from_public_bytes(raw) for key_id, raw in keys.items()
        }

    def knows(self, key_id: str) -> bool:
        return key_id in self._keys

    async def verify_many(self, receipts: Mapping[str, Receipt]) -> None:
        """:meth:`verify` each (the shape the shared client loop awaits)."""
        for quiz_code, receipt in receipts.items():
            self.verify(quiz_code, receipt)

    def verify(self, quiz_code: str, receipt: Receipt) -> None:
        from cryptography.exceptions import InvalidSignature

        key = self._keys.get(receipt.key_id)
        if key is None:
            raise ReceiptError(
                f"unknown receipt key {receipt.key_id!r}",
                quiz_code=quiz_code,
                key_id=receipt.key_id,
            )
        try:
            key.verify(receipt.signature, receipt.signed_bytes())
        except InvalidSignature:
            raise ReceiptError(
                "receipt signature does not verify", quiz_code=quiz_code, key_id=receipt.key_id
            ) from None
