"""The candidate's sign-ins on this device, for the client: the login (online, or from the
cached session offline), renewals and takeovers, and what each says of the active device.

The device id is sent at every sign-in, and must be the id the answer store keeps (the saves'
``metadata.device.id``). A key login does not know the candidate, so their store, before it
signs in: the id is kept device-wide per plan too (:class:`~.interfaces.DeviceIdStore`), every
new store of the plan takes it, and a store from before it, with an id of its own, makes the
client sign in once more with that id (online) and makes that id the device's, so that the
next login signs in once. A token that carries another id than the store's (an offline start
from a session cached before) is refused as from a replaced device naming this one active:
that refusal renews the token (:func:`token_for_another`) and the save goes again.

What the server says of the active device (a sign-in's ``activeDevice``, a ``device_active``
frame) goes to the engine; while a takeover restores, news that this device is active waits,
so that nothing held is sent before the restore.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from ..devices import ActiveDevice, replaced_by
from ..engine import Engine
from ..events import Alert
from ..exceptions import ExamSyncError, RemoteProtocolError, TransportError
from ..frames import DeviceActive
from .api import HttpApi, Session
from .interfaces import DeviceIdStore, SessionStore

__all__ = ["Sessions", "device_id_from", "token_for_another"]

_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # the server's ID pattern


async def device_id_from(store: DeviceIdStore) -> str:
    """The id ``store`` keeps, or a new uuid4 hex, kept there."""
    found = await store.load()
    if found is not None and _DEVICE_ID.fullmatch(found):
        return found
    made = uuid.uuid4().hex
    await store.save(made)
    return made


def token_for_another(error: ExamSyncError, device_id: str) -> bool:
    """Whether ``error`` refuses a save as from a replaced device while naming ``device_id``,
    this one, active: the token carries another device's id (renew it, then send again)."""
    record = replaced_by(error)
    return record is not None and record.device_id == device_id


class Sessions:
    """One client's sign-ins and what they, and the frames, say of the active device."""

    def __init__(
        self,
        http: HttpApi,
        engine: Callable[[], Engine | None],
        *,
        clock: Callable[[], float],
        publish: Callable[[list[Any]], None],
        wake: Callable[[], None],
    ) -> None:
        self._http, self._engine = http, engine
        self._clock, self._publish, self._wake = clock, publish, wake
        self._pending: ActiveDevice | None = None  # news the engine is not to have yet
        self._taking_over = False
        http.on_session = self.signed_in

    async def login(
        self, plan_id: str, device_id: str, cache: SessionStore, **credentials: str | None
    ) -> tuple[Session, bool]:
        """Sign in from ``device_id``; offline, the session cached by an earlier login with
        the same credentials. Returns it and whether it is fresh (the server answered)."""
        try:
            session = await self._http.login(plan_id, device_id=device_id, **credentials)
        except TransportError:
            cached = await cache.load()
            if cached is None:
                raise
            self._http.token = cached.token
            return cached, False
        return session, True

    async def match_store(
        self, sent: str, session: Session, online: bool, cache: SessionStore, ids: DeviceIdStore
    ) -> Session:
        """The engine is open: if its store keeps another id than ``sent`` (a store from
        before the device-wide id), that id becomes the device's (the next login sends it
        first) and, online, signs in again; then cache the final session (its token carries
        the store's id) and hand the engine what the sign-ins said."""
        engine = self._engine()
        if engine is not None and engine.device_id != sent:
            await ids.save(engine.device_id)
            self._http.use_device(engine.device_id)  # renewals and takeovers from it too
            if online:  # offline, the first save's refusal renews the token (token_for_another)
                session = await self._http.take_over(engine.device_id)
        if online:
            await cache.save(session)
        self._release()
        return session

    def forget(self) -> None:
        """A login that failed: what its sign-ins said goes with it."""
        self._pending = None

    async def take_over(self, restore: Callable[[], Awaitable[object]]) -> Session:
        """Make this device the active one: sign in again (activating), restore (what
        changed elsewhere comes first), then let the engine send what it held."""
        engine = self._engine()
        if engine is None:
            raise ExamSyncError("log in first")
        self._taking_over = True
        try:
            session = await self._http.take_over()
            if session.active_device is None:  # a server that does not say: this one is
                policy = session.device_policy or "single"
                self._hold(ActiveDevice.of(engine.device_id, session.server_time, policy))
            try:
                await restore()
            except ExamSyncError as exc:  # as at login: the local answers still stand
                self._publish([Alert(exc, "restore")])
        finally:
            self._taking_over = False
            self._release()
        return session

    def signed_in(self, session: Session) -> None:
        """Every sign-in's answer (:attr:`HttpApi.on_session`); a renewal's may name another
        device: this one is then replaced."""
        if session.active_device is not None:
            self._learn(session.active_device)

    def receive_frame(self, frame: DeviceActive) -> None:
        """A ``device_active`` frame, from the socket or a poll."""
        try:
            record = ActiveDevice.of(frame.device_id, frame.since, frame.policy)
        except RemoteProtocolError as exc:
            self._publish([Alert(exc, "socket")])
            return
        self._learn(record)

    def _learn(self, record: ActiveDevice) -> None:
        engine = self._engine()
        if engine is None or (self._taking_over and record.device_id == engine.device_id):
            self._hold(record)
            return
        engine.device_active(record.device_id, record.since, record.policy, self._clock())
        self._wake()

    def _hold(self, record: ActiveDevice) -> None:
        if self._pending is None or record.order > self._pending.order:
            self._pending = record

    def _release(self) -> None:
        record, self._pending = self._pending, None
        if record is not None:
            self._learn(record)
