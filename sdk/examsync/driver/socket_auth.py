"""A new socket's first exchange (docs/protocol.md, "Authentication"), for both adapters.

The session token goes in the socket's first frame, never in its URL: a browser prints the URL
of a socket that fails to connect, and proxies log it. An adapter opens ``{socketUrl}`` as it
is, then calls :func:`authenticate`, so "connected" still means "accepted": a refusal raises
from the adapter's ``connect()`` as a refused handshake did, in the browser too.
"""

from __future__ import annotations

import asyncio

from ..exceptions import ExamSyncError, RemoteProtocolError, TransportError
from ..frames import ErrorFrame, Welcome, auth_frame, parse_frame
from ..messages import parse_error
from .interfaces import Socket

__all__ = ["authenticate"]


async def authenticate(
    socket: Socket, token: str, last_position: str | None, timeout: float
) -> str | bytes:
    """Send the auth frame on a socket just opened and read the server's first frame, the
    welcome, which is returned as received (the reader takes it as any other frame).

    Raises the refusal's ServerError (AuthenticationError for a bad token), TransportError if the
    socket closes or no answer comes within ``timeout`` seconds, RemoteProtocolError if the
    answer is not a welcome. On any failure the socket is aborted.
    """
    try:
        async with asyncio.timeout(timeout):
            await socket.send(auth_frame(token, last_position))
            data = await socket.recv()
        frame = parse_frame(data)
        if isinstance(frame, ErrorFrame):
            raise parse_error(frame.status, dict(frame.body))
        if not isinstance(frame, Welcome):
            raise RemoteProtocolError(f"expected a welcome, got {type(frame).__name__}")
    except TimeoutError as exc:
        socket.abort()
        message = f"socket connect: no welcome after {timeout:g} s"
        raise TransportError(message, timeout=True) from exc
    except (ExamSyncError, asyncio.CancelledError):
        socket.abort()
        raise
    return data
