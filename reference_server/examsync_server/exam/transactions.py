"""An exam-room transaction: the store's refusals answered as the API's errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ..errors import ApiError, not_found
from ..store.errors import Conflict, NotFound
from ..store.sqlite import Database, Tx


@asynccontextmanager
async def transaction(db: Database) -> AsyncIterator[Tx]:
    """`db.transaction()`, with NotFound as `404 {what}_not_found` and Conflict (a taken id)
    as `409 id_conflict`; either rolls the transaction back."""
    try:
        async with db.transaction() as tx:
            yield tx
    except NotFound as exc:
        raise not_found(exc.what, **exc.key) from None
    except Conflict as exc:
        raise ApiError(409, "id_conflict", str(exc), {"field": exc.field, "ids": exc.ids}) from None
