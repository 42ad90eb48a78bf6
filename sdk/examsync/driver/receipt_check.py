"""Checking the signed receipts in a save's acknowledgement before the engine takes it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..exceptions import RemoteProtocolError
from ..messages import SaveAck
from ..protocol import decode_json
from ..receipts import receipts_in
from .interfaces import Verifier

__all__ = ["ReceiptCheck"]


class ReceiptCheck:
    """Verifies an ack's receipts with the server's published keys: fetched at first use, and
    again when a receipt names a key not known yet (the server rotated its key)."""

    def __init__(
        self,
        fetch_keys: Callable[[], Awaitable[Mapping[str, bytes]]],
        new_verifier: Callable[[Mapping[str, bytes]], Verifier],
    ) -> None:
        self._fetch_keys = fetch_keys
        self._new_verifier = new_verifier
        self._verifier: Verifier | None = None

    async def check(self, body: bytes | Mapping[str, Any]) -> None:
        """Raise ReceiptError (or the key fetch's error) unless every receipt in a 2xx ack
        verifies. A malformed ack passes: the engine refuses it and reports why."""
        try:
            ack = SaveAck.from_wire(decode_json(body) if isinstance(body, bytes) else body)
        except RemoteProtocolError:
            return
        receipts = receipts_in(ack)
        if not receipts:
            return
        verifier = self._verifier
        if verifier is None or not all(verifier.knows(r.key_id) for r in receipts.values()):
            verifier = self._verifier = self._new_verifier(await self._fetch_keys())
        await verifier.verify_many(receipts)
