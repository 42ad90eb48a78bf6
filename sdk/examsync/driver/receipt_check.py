"""Checking the signed receipts in a save's acknowledgement before the engine takes it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from ..messages import SaveAck
from ..receipts import ReceiptKeys, ReceiptVerifier, receipts_in

__all__ = ["ReceiptCheck"]


class ReceiptCheck:
    """Verifies an ack's receipts with the server's published keys: fetched at first use, and
    again when a receipt names a key not known yet (the server rotated its key). The adapter's
    verifier is made at first use too (a client that never checks never needs Ed25519)."""

    def __init__(
        self,
        fetch_keys: Callable[[], Awaitable[Mapping[str, bytes]]],
        new_verifier: Callable[[], ReceiptVerifier],
    ) -> None:
        self._fetch_keys = fetch_keys
        self._new_verifier = new_verifier
        self._verifier: ReceiptVerifier | None = None
        self._keys: ReceiptKeys | None = None

    async def check(self, ack: SaveAck) -> None:
        """Raise ReceiptError (or the key fetch's error) unless every receipt in ``ack``
        verifies."""
        receipts = receipts_in(ack)
        if not receipts:
            return
        keys = self._keys
        if keys is None or not all(keys.knows(r.key_id) for r in receipts.values()):
            if self._verifier is None:
                self._verifier = self._new_verifier()
            keys = self._keys = ReceiptKeys(await self._fetch_keys(), self._verifier)
        await keys.verify_many(receipts)
