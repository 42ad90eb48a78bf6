"""The browser transports: HTTP over ``fetch`` (``pyodide.http.pyfetch``) and ``WebSocket``.

Thin, like the CPython ones: they move bytes and translate JavaScript errors at this boundary
into :class:`TransportError` (``raise ... from exc``). What the bytes mean is the shared API's
business (:class:`~examsync.driver.api.HttpApi`) and the core's.

The token goes in the socket's first frame (``driver/socket_auth.py``), so a refused token is
an AuthenticationError here as on CPython. A browser still hides why a WebSocket *handshake*
failed (no status, close code 1006): the gate's 503 is a TransportError, which the connection
machine retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from ..driver.api import HttpApi, Response
from ..driver.socket_auth import authenticate
from ..exceptions import TransportError
from ._js import JsException, create_proxy, error_name, js, pyfetch, to_js

__all__ = ["FetchTransport", "WebSocketTransport"]

_OPEN = 1  # WebSocket.OPEN
_CLOSE_WAIT = 1.0  # seconds close() waits for the closing handshake


class FetchTransport(HttpApi):
    """The candidate API (:class:`~examsync.driver.api.HttpApi`) over the browser's fetch."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        super().__init__(base_url)
        self.timeout = timeout

    async def _send(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Response:
        options: dict[str, Any] = {"method": method, "headers": dict(headers)}
        if body is not None:
            options["body"] = to_js(body)
        try:
            async with asyncio.timeout(self.timeout):
                response = await pyfetch(url, **options)
                content = await response.bytes()
        except TimeoutError as exc:
            raise TransportError(
                f"{method} {url}: no answer in {self.timeout:g} s", timeout=True
            ) from exc
        except (OSError, JsException) as exc:  # pyfetch's AbortError is an OSError
            raise TransportError(f"{method} {url}: {error_name(exc)}: {exc}") from exc
        # The Fetch API lists header names in lower case already.
        return Response(int(response.status), dict(response.headers), bytes(content))


class _Closed:
    """The inbox's last item: the socket closed (``code`` and ``reason`` as the browser says)."""

    def __init__(self, code: int, reason: str) -> None:
        self.code, self.reason = code, reason


class WebSocketTransport:
    """One open, authenticated browser WebSocket to ``{socketUrl}``. Build it with
    :meth:`connect`.

    The listeners are ``create_proxy`` wrappers; they are removed and destroyed as soon as the
    socket is closed, aborted or fails to open, so a closed transport holds no JS references.
    """

    def __init__(self, ws: Any, inbox: asyncio.Queue[str | bytes | _Closed]) -> None:
        self._ws = ws
        self._inbox = inbox
        self._listeners: list[tuple[str, Any]] = []
        self._closed: _Closed | None = None
        self._done = asyncio.Event()  # set once closed, whoever closed it
        self._welcome: str | bytes | None = None  # read by connect(), handed out by recv()

    @classmethod
    async def connect(
        cls, url: str, token: str, *, last_position: str | None = None, open_timeout: float = 10.0
    ) -> WebSocketTransport:
        """Open the socket and authenticate with ``token`` in the first frame (resuming after
        ``last_position`` when given); TransportError if it is not open and welcomed within
        ``open_timeout``, ServerError when the token is refused. The URL carries no secret."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + open_timeout
        try:
            ws = js.WebSocket.new(url)
        except JsException as exc:  # a malformed URL (SyntaxError)
            raise TransportError(f"socket connect: {error_name(exc)}: {exc}") from exc
        ws.binaryType = "arraybuffer"
        opened: asyncio.Future[None] = loop.create_future()
        self = cls(ws, asyncio.Queue())

        def on_open(event: Any) -> None:
            if not opened.done():
                opened.set_result(None)

        def on_message(event: Any) -> None:
            data = event.data
            self._inbox.put_nowait(data if isinstance(data, str) else data.to_bytes())

        def on_close(event: Any) -> None:
            self._finish(_Closed(int(event.code), str(event.reason)))
            if not opened.done():
                opened.set_exception(
                    TransportError(f"socket connect: closed with code {event.code}")
                )

        def on_error(event: Any) -> None:
            pass  # "close" always follows and says more; listening keeps Node's ws from throwing

        self._listen({"open": on_open, "message": on_message, "error": on_error, "close": on_close})
        try:
            await asyncio.wait_for(opened, open_timeout)
        except TimeoutError:
            self.abort()
            raise TransportError(
                f"socket connect: not open after {open_timeout:g} s", timeout=True
            ) from None
        except TransportError:
            self._unlisten()
            raise
        left = max(0.0, deadline - loop.time())
        self._welcome = await authenticate(self, token, last_position, left)
        return self

    async def send(self, frame: str) -> None:
        if self._closed is not None or self._ws.readyState != _OPEN:
            raise TransportError("socket send: the socket is closed")
        try:
            self._ws.send(frame)
        except JsException as exc:
            raise TransportError(f"socket send: {error_name(exc)}: {exc}") from exc

    async def recv(self) -> str | bytes:
        """The next message (the welcome first); TransportError once the socket is closed."""
        if self._welcome is not None:
            welcome, self._welcome = self._welcome, None
            return welcome
        if self._closed is not None and self._inbox.empty():
            raise TransportError(f"socket closed: {self._closed.code} {self._closed.reason}")
        item = await self._inbox.get()
        if isinstance(item, _Closed):
            self._inbox.put_nowait(item)  # every later recv() says closed too
            raise TransportError(f"socket closed: {item.code} {item.reason}")
        return item

    def abort(self) -> None:
        """Stop using the socket now. A browser cannot reset TCP: it starts the closing
        handshake, and this side stops listening at once."""
        self._finish(_Closed(1006, "aborted"), discard=True)
        self._close_quietly(4000, "client gave up on the connection")

    async def close(self) -> None:
        """Close with the handshake (waiting up to a second for it), then let go of the socket."""
        if self._closed is not None:
            return
        self._close_quietly(1000, "")
        try:
            await asyncio.wait_for(self._done.wait(), _CLOSE_WAIT)
        except TimeoutError:
            pass
        self._finish(_Closed(1000, "closed by client"), discard=True)

    # --- listeners -------------------------------------------------------------------------------

    def _listen(self, handlers: Mapping[str, Callable[[Any], None]]) -> None:
        for kind, handler in handlers.items():
            proxy = create_proxy(handler)
            self._ws.addEventListener(kind, proxy)
            self._listeners.append((kind, proxy))

    def _unlisten(self) -> None:
        listeners, self._listeners = self._listeners, []
        for kind, proxy in listeners:
            self._ws.removeEventListener(kind, proxy)
            # Destroy after the current dispatch: a listener may be what runs this.
            asyncio.get_running_loop().call_soon(proxy.destroy)

    def _finish(self, closed: _Closed, *, discard: bool = False) -> None:
        """Mark closed. Messages that came before a peer's close are still read (they may be
        acks); after our own close or abort (``discard``) nothing more is."""
        if discard:
            self._welcome = None
            while not self._inbox.empty():
                self._inbox.get_nowait()
        if self._closed is None:
            self._closed = closed
            self._inbox.put_nowait(closed)
            self._done.set()
            self._unlisten()

    def _close_quietly(self, code: int, reason: str) -> None:
        try:
            self._ws.close(code, reason)
        except JsException:
            pass  # already closing
