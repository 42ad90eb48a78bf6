"""Saves on their way out and their answers on the way back, for the client's loop.

A save goes over the socket when the connection says so (its ack comes back as a frame), else
over HTTP. An answer is read once; its receipts are verified before the engine sees the ack,
so a receipt that does not verify fails the send (the engine retries) instead of settling it.
A refusal that names this very device active blames the token (it carries another device's
id): the token is renewed and the save sent again. A renewal that fails fails the send (the
engine retries with its backoff, and the next send renews again).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from ..connection import SaveChannel
from ..engine import Engine, SaveRequest
from ..events import Alert
from ..exceptions import ExamSyncError, ReceiptError, ServerError, TransportError
from ..frames import ErrorFrame, SaveAckFrame
from ..messages import read_save_response
from .api import HttpApi
from .receipt_check import ReceiptCheck
from .sessions import token_for_another
from .socket_link import SocketLink

__all__ = ["SaveCourier"]


class SaveCourier:
    """Sends the engine's save requests and hands it their answers (one client's)."""

    def __init__(
        self,
        engine: Callable[[], Engine],
        http: HttpApi,
        link: SocketLink,
        receipts: ReceiptCheck | None,  # None: receipts are not verified
        *,
        clock: Callable[[], float],
        publish: Callable[[list[Any]], None],
        spawn: Callable[[Coroutine[Any, Any, None], str], None],
    ) -> None:
        self._engine, self._http, self._link, self._receipts = engine, http, link, receipts
        self._clock, self._publish, self._spawn = clock, publish, spawn

    async def send(self, request: SaveRequest, channel: SaveChannel | None) -> None:
        if channel is SaveChannel.SOCKET and await self._link.send_save(
            request.batch_id, request.body
        ):
            return  # the ack comes as a frame, routed to deliver()
        try:
            status, body = await self._http.save(request.body)
            if self._wrong_token(status, body) and await self._renew():
                status, body = await self._http.save(request.body)
        except TransportError as exc:
            self._engine().send_failed(request.batch_id, exc, self._clock())
            return
        except ServerError as exc:  # a renewal refused (429, 503, ...): retried with the backoff
            self._engine().receive_save_error(request.batch_id, exc, self._clock())
            return
        await self.deliver(request.batch_id, status, body)

    def receive_frame(self, frame: SaveAckFrame | ErrorFrame) -> None:
        """The socket answered a save (an ack, or an error), or sent an error about none."""
        batch = self._link.answered(frame.request_id)
        if isinstance(frame, SaveAckFrame):
            if batch is not None:  # else not for a save of this socket: nothing to trust
                self._spawn(self.deliver(batch, 200, dict(frame.body)), "save")
        elif batch is not None and self._wrong_token(frame.status, dict(frame.body)):
            self._spawn(self._resend(batch, frame.status, dict(frame.body)), "save")
        elif batch is not None:
            self._engine().receive_save_response(
                batch, frame.status, dict(frame.body), self._clock()
            )
        else:
            error = ServerError(
                str(frame.body.get("error")), code="socket_error", status=frame.status
            )
            self._publish([Alert(error, "socket")])

    async def _renew(self) -> bool:
        """Renew the token, and drop the socket opened with the old one (it reopens with the
        new); False if that failed (the refusal then stands: the engine retries later)."""
        try:
            renewed = await self._http.renew()
        except ExamSyncError as exc:
            self._publish([Alert(exc, "save")])
            return False
        if renewed:
            self._link.drop(TransportError("the token named another device: renewed"))
        return renewed

    async def _resend(self, batch_id: int, status: int, body: dict[str, Any]) -> None:
        if await self._renew():
            self._engine().send_failed(batch_id, TransportError("token renewed"), self._clock())
        else:
            self._engine().receive_save_response(batch_id, status, body, self._clock())

    def _wrong_token(self, status: int, body: bytes | dict[str, Any]) -> bool:
        """Whether a refused save named this device active: the token carries another
        device's id (an offline start from a session cached before)."""
        if status != 409:
            return False
        try:
            read_save_response(status, body)
        except ExamSyncError as exc:
            return token_for_another(exc, self._engine().device_id)
        return False

    async def deliver(self, batch_id: int, status: int, body: bytes | dict[str, Any]) -> None:
        """Read a save's answer once; verify the ack's receipts, then hand the ack to the
        engine. A bad receipt fails the send."""
        engine = self._engine()
        try:
            ack = read_save_response(status, body)
        except ExamSyncError as exc:
            engine.receive_save_error(batch_id, exc, self._clock())
            return
        if self._receipts is not None:
            try:
                await self._receipts.check(ack)
            except ExamSyncError as exc:
                if isinstance(exc, ReceiptError):
                    self._publish([Alert(exc, "save")])
                engine.send_failed(batch_id, exc, self._clock())
                return
        engine.receive_save_ack(batch_id, ack, self._clock())
