"""`POST /api/v1/answers` as a bare ASGI handler in front of Quart: the one hot path.

Every candidate saves every few seconds, so this route carries most of the traffic, and Quart's
request machinery (contexts, blueprint dispatch, response objects) costs more CPU per save than
the save's own work (docs/server.md, "The hot path"). So this route reads the body and headers
straight off the ASGI scope and answers with the same JSON, the same error shapes and the same
codes as every Quart route. All other paths go to Quart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..access.tokens import bearer
from ..errors import ApiError, error_for
from .http_guard import Receive, Scope, Send, send_error, send_json, too_large

if TYPE_CHECKING:
    from ..runtime import Runtime

PATH = "/api/v1/answers"


def is_save(scope: Scope) -> bool:
    return bool(scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "POST")


async def handle_save(runtime: Runtime | None, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one save; `runtime` is the app's Runtime, or None while the server starts."""
    try:
        if runtime is None:
            raise ApiError(503, "starting", "the server is starting; retry shortly")
        headers = _headers(scope)
        who = runtime.tokens.require_session(bearer(headers.get(b"authorization")))
        body = await _body(receive, headers, runtime.settings.limits.max_save_bytes)
        ack = await runtime.saves.receive(who, body)  # the ack's JSON
    except Exception as exc:
        await send_error(send, error_for(exc, "a save"))
    else:
        await send_json(send, 200, ack, [])


def _headers(scope: Scope) -> dict[bytes, str]:
    return {name.lower(): value.decode("latin-1") for name, value in scope["headers"]}


async def _body(receive: Receive, headers: dict[bytes, str], limit: int) -> bytes:
    """The whole body, refusing one over `limit` as soon as that is known."""
    declared = headers.get(b"content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "client_disconnected", "the client went away mid-request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
