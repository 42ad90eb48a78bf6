"""What every handler needs: the runtime, the caller, the JSON body."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from quart import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from examsync.protocol import finite_float, reject_constant

from ..access.tokens import Principal, bearer
from ..errors import ApiError
from .http_guard import too_large

if TYPE_CHECKING:
    from ..runtime import Runtime


def runtime() -> Runtime:
    found: Runtime | None = current_app.extensions.get("examsync.runtime")
    if found is None:
        raise ApiError(503, "starting", "the server is starting; retry shortly")
    return found


def require_admin() -> Runtime:
    rt = runtime()
    rt.tokens.require_admin(bearer(request.headers.get("Authorization")))
    return rt


def require_session() -> tuple[Runtime, Principal]:
    rt = runtime()
    return rt, rt.tokens.require_session(bearer(request.headers.get("Authorization")))


async def read_body() -> bytes:
    """The request body, refused with 413 as soon as it is known to pass its route's limit
    (api/http_guard.py: a declared length over it never gets here)."""
    limit = request.max_content_length or 0
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.body:
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            chunks.append(chunk)
    except RequestEntityTooLarge:  # Quart's Body counted past the same limit first
        raise too_large(limit) from None
    return b"".join(chunks)


async def json_body(*, optional: bool = False) -> Any:
    """The request's JSON; with `optional`, an empty body reads as `{}`."""
    data = await read_body()
    if not data and optional:
        return {}
    if not data:
        raise ApiError(400, "empty_body", "the request needs a JSON body")
    try:
        return json.loads(data, parse_constant=reject_constant, parse_float=finite_float)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "the body is not UTF-8 JSON") from None
    except (ValueError, RecursionError):
        # Python's own limits: integers of thousands of digits, nesting deeper than the stack
        raise ApiError(
            400,
            "invalid_json",
            "the body is not acceptable JSON: NaN/Infinity, a number too long or too large, or"
            " nesting too deep",
        ) from None
