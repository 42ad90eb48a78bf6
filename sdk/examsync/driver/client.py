"""The exam client's loop, shared by the CPython and Pyodide adapters (asyncio only).

The client owns no sync logic: it pumps two sans-I/O machines with real time and real I/O.
``examsync.engine.Engine`` decides what to save and when; ``examsync.connection.Connection``
decides when the socket is dead, when to reconnect, and whether saves go over the socket, over
HTTP, or wait. One task runs the loop; every input (a frame, a response, a new answer) sets a
wake-up event, and the loop otherwise sleeps until the earlier of the two machines' deadlines::

    loop: engine.tick(wall); conn.tick(monotonic)
          do conn.actions_to_do()            (connect, send a frame, drop the socket)
          hand conn's save channel to the engine (None → engine offline)
          send engine.next_request(wall)     (over the socket or HTTP)
          publish the events of both
          sleep until a deadline or a wake-up

Everything runs on one event loop (CPython's, or Pyodide's WebLoop in the browser), so the
machines need no locks. The I/O comes from the adapter, through the abstract methods of
:class:`BaseExamClient` and an :class:`~examsync.driver.api.HttpApi`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from abc import abstractmethod
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any, Self

from ..connection import (
    Connect,
    Connection,
    ConnectionChanged,
    ConnectionState,
    Drop,
    Poll,
    SaveChannel,
    Send,
)
from ..engine import Engine, EngineConfig
from ..events import Alert, Event, ProgressReloaded, RestoreReport, StorageState
from ..exceptions import ExamSyncError, RemoteProtocolError, ServerError, TransportError
from ..frames import (
    DeviceActive,
    ErrorFrame,
    ExamEnded,
    Frame,
    ReloadState,
    Resumed,
    SaveAckFrame,
    StageChanged,
    UnknownFrame,
    Welcome,
)
from ..receipts import ReceiptVerifier
from ..storage import Storage
from ..uploads import UploadOutcome, UploadQueue
from .answer_view import AnswerView
from .api import SIGN_IN_AGAIN, HttpApi, Session
from .interfaces import ClientSettings, DeviceIdStore, SessionStore, Socket
from .publisher import Publisher
from .receipt_check import ReceiptCheck
from .saves import SaveCourier
from .sessions import Sessions, device_id_from
from .socket_link import SocketLink
from .timing import wait_woken
from .uploads import Uploader

__all__ = ["BaseExamClient", "ClientEvent"]

log = logging.getLogger("examsync")

ClientEvent = (
    Event
    | ConnectionChanged
    | ExamEnded
    | StageChanged
    | Resumed
    | ReloadState
    | ProgressReloaded
    | UnknownFrame
    | Alert
    | StorageState
    | UploadOutcome
)


class BaseExamClient(AnswerView):
    """One candidate in one plan: login, local writes, the sync loop, events.

    Adapters provide the I/O: an :class:`HttpApi`, and the abstract methods below (the local
    store, the socket, the receipt verifier, the session cache).
    """

    def __init__(
        self,
        config: ClientSettings,
        http: HttpApi,
        *,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = config
        self._http = http
        self._rng, self._clock, self._mono = rng, clock, monotonic
        self._session: Session | None = None
        self._storage: Storage | None = None
        self._storage_state: StorageState | None = None
        self._engine: Engine | None = None
        self._uploader: Uploader | None = None
        self._conn = Connection(config.connection, rng)
        self._wake = asyncio.Event()
        self._channel: SaveChannel | None = None  # the save channel the engine was last given
        self._socket_asked_at: float | None = None  # when the socket began opening (wall clock)
        self._link = SocketLink(
            self._conn,
            self._open_socket,
            monotonic=monotonic,
            spawn=self._spawn,
            wake=self._wake.set,
            on_frame=self._route,
            publish=self._publish,
            save_failed=self._save_failed,
        )
        receipts = ReceiptCheck(http.keys, self._new_verifier) if config.verify_receipts else None
        self._saves = SaveCourier(
            self._require_engine,
            http,
            self._link,
            receipts,
            clock=self._clock,
            publish=self._publish,
            spawn=self._spawn,
        )
        self._sessions = Sessions(
            http, lambda: self._engine, clock=clock, publish=self._publish, wake=self._wake.set
        )
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._publisher: Publisher[ClientEvent] = Publisher()
        self._sync_waiters: list[asyncio.Future[None]] = []
        self._closing = False
        self.exam_ended: ExamEnded | None = None
        self._progress: Mapping[str, Any] = {}

    # --- what an adapter provides ----------------------------------------------------------------

    @abstractmethod
    def _session_store(
        self, candidate_id: str | None, auth_code: str | None, key: str | None
    ) -> SessionStore:
        """Where the session of this login is cached (keyed by the credentials)."""

    @abstractmethod
    def _device_id_store(self) -> DeviceIdStore:
        """Where this device's id for the plan is kept, apart from any candidate's store."""

    @abstractmethod
    async def _open_storage(self, candidate_id: str) -> tuple[Storage, StorageState]:
        """Open this candidate's local store for the configured plan and exam code.

        Returns it and the state to report. Raises StorageError (StoreLockedError...) if it
        cannot be used at all.
        """

    @abstractmethod
    async def _close_storage(self, storage: Storage) -> None:
        """Release the store (after the loop stopped)."""

    @abstractmethod
    async def _connect_socket(self, url: str, token: str, last_position: str | None) -> Socket:
        """Open the socket, resuming after ``last_position`` when given; TransportError, or
        ServerError when the handshake is refused."""

    @abstractmethod
    def _new_verifier(self) -> ReceiptVerifier:
        """This adapter's Ed25519 check (made when the first receipt is to be verified)."""

    async def _durable(self) -> None:  # noqa: B027 (a hook with a do-nothing default)
        """Return once every local write so far survives a crash (StorageError if it failed).

        A synchronous store (SQLite) is durable when its commit returns: nothing to wait for.
        """

    # --- start -----------------------------------------------------------------------------------

    async def login(
        self,
        *,
        candidate_id: str | None = None,
        auth_code: str | None = None,
        key: str | None = None,
    ) -> Session:
        """Log in (web: candidate id + auth code; or key), open the local store, restore,
        start syncing. This device becomes the candidate's active one (under ``single``, any
        other is replaced). Offline, a session cached by an earlier login with the same
        credentials is used, so a restarted client keeps taking answers. Raises
        StoreLockedError if another client holds this candidate's store.
        """
        if self._session is not None:
            raise ExamSyncError("already logged in")
        config = self._settings
        credentials = {"candidate_id": candidate_id, "auth_code": auth_code, "key": key}
        cache = self._session_store(**credentials)
        device_id = await device_id_from(self._device_id_store())  # known before the candidate
        asked_at = self._clock()
        session, online = await self._sessions.login(
            config.plan_id, device_id, cache, **credentials
        )
        storage, storage_state = await self._open_storage(session.candidate_id)
        try:
            session = await self._start(session, online, device_id, storage, asked_at, cache)
        except BaseException:  # release what it opened: the login can be tried again
            self._sessions.forget()
            self._engine = self._storage = self._uploader = self._session = None
            await self._close_storage(storage)
            raise
        self._set_storage_state(storage_state)
        if config.restore_on_start and online:
            try:
                await self.restore()
            except ExamSyncError as exc:  # unreachable or refused: local answers still stand
                self._publish([Alert(exc, "restore")])
        self._conn.start(self._mono())
        self._runner = asyncio.create_task(self._run(), name="examsync-client")
        self._spawn(self.uploads.run(), "uploads")
        return session

    async def _start(
        self,
        session: Session,
        online: bool,
        device_id: str,
        storage: Storage,
        asked_at: float,
        cache: SessionStore,
    ) -> Session:
        """The login once the store is open: the engine, the store's device id, the clock."""
        config = self._settings
        engine_config = EngineConfig(
            plan_id=config.plan_id,
            exam_code=config.exam_code,
            candidate_id=session.candidate_id,
            device=config.device,
            max_batch=config.max_batch,
            request_timeout=config.request_timeout,
        )
        # The id is kept only by a store that has none yet: one id per device's store.
        self._engine = Engine(engine_config, storage, self._rng, new_device_id=device_id)
        self._storage = storage
        ids = self._device_id_store()
        session = await self._sessions.match_store(device_id, session, online, cache, ids)
        if online:  # a cached session's time is old: the stored offset stands
            self._observe_server_time(session.server_time, asked_at, "login")
        progress = session.raw.get("progress")
        self._progress = progress if isinstance(progress, Mapping) else {}
        self._uploader = Uploader(
            UploadQueue(storage, self._rng),
            self._http,
            clock=self._clock,
            durable=self._durable,
            publish=self._publish,
            alert=self._alert,
        )
        self._session = session
        return session

    async def take_over(self) -> Session:
        """Continue the exam on this device (the page's "continue here" button, after
        ``DeviceChanged(replaced=True)``): sign in again with the login's credentials, which
        makes this device the active one, restore, then send the edits held meanwhile.
        TransportError or ServerError (still replaced) if the sign-in fails."""
        session = await self._sessions.take_over(self.restore)
        self._session = session
        return session

    # --- local input -----------------------------------------------------------------------------

    def _set_answer(self, quiz_code: str, value: str) -> int:
        """Commit the answer to the store and queue it (durable once :meth:`_durable` returns)."""
        version = self._require_engine().set_answer(quiz_code, value, self._clock())
        self._wake.set()
        return version

    async def save_answer(self, quiz_code: str, value: str) -> int:
        """Store the answer durably and queue it; return its version. The same on every
        platform: when the await returns, the answer survives a crash of this device."""
        version = self._set_answer(quiz_code, value)
        await self._durable()
        return version

    @property
    def uploads(self) -> Uploader:
        """Captures and log entries: ``await uploads.capture(...)``, ``uploads.log(...)``."""
        if self._uploader is None:
            raise ExamSyncError("log in first")
        return self._uploader

    def record_navigation(self, from_quiz: str, to_quiz: str) -> None:
        """Record a move between questions; it rides along with the next save."""
        self._require_engine().record_navigation(from_quiz, to_quiz, self._clock())

    def record_behavior(self, *, focus_ms: int = 0, keystrokes: int = 0) -> None:
        """Add to the focus-time and keystroke totals (batch them; edits are counted for you)."""
        self._require_engine().record_behavior(focus_ms=focus_ms, keystrokes=keystrokes)

    # --- reading state ---------------------------------------------------------------------------

    @property
    def session(self) -> Session | None:
        return self._session

    @property
    def progress(self) -> Mapping[str, Any]:
        """The candidate's status and stage as the server last said: the session's
        ``progress`` at login, fetched again after a ``reload_state`` (ProgressReloaded)."""
        return self._progress

    @property
    def storage_state(self) -> StorageState | None:
        """Where answers are kept and whether that is durable now (None before login)."""
        return self._storage_state

    @property
    def connection_state(self) -> ConnectionState:
        return self._conn.state

    @property
    def save_channel(self) -> SaveChannel | None:
        return self._conn.save_channel

    # --- waiting ---------------------------------------------------------------------------------

    async def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait until the server acknowledged every answer; False if ``timeout`` passed first."""
        if not self._require_engine().outbox:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sync_waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            return False
        finally:
            if waiter in self._sync_waiters:
                self._sync_waiters.remove(waiter)
        return True

    async def flush(self, timeout: float | None = None) -> bool:
        """Send what is pending now (skipping a backoff wait), then :meth:`wait_synced`."""
        engine = self._require_engine()
        if engine.online:
            engine.connection_restored(self._clock())
        self._conn.retry_now(self._mono())
        self._wake.set()
        return await self.wait_synced(timeout)

    async def restore(self) -> RestoreReport:
        """Merge the server's copy into local state (docs/sdk.md, "Restore merge").

        ``report.unconfirmed`` lists answers this device holds a receipt for that the server no
        longer returns (they are sent again, not dropped). Raises ServerError, TransportError,
        or RemoteProtocolError (nothing changed) on a bad response.
        """
        engine = self._require_engine()
        asked_at = self._clock()
        body = await self._http.restore(self._settings.exam_code)
        report = engine.receive_restore(body, self._clock(), sent_at=asked_at)
        if report.unconfirmed:
            log.warning("restore does not honour receipts for %s", report.unconfirmed)
        self._wake.set()
        if self._runner is None:  # before the loop runs: publish the report ourselves
            self._publish(engine.events_received())
        return report

    # --- events ----------------------------------------------------------------------------------

    def add_listener(self, callback: Callable[[ClientEvent], None]) -> Callable[[], None]:
        """Call ``callback`` with every event (on the loop's thread); returns its remover."""
        return self._publisher.add_listener(callback)

    def events(self) -> AsyncIterator[ClientEvent]:
        """Every event from now on, as an async iterator."""
        return self._publisher.events()

    # --- stop ------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop syncing and release the store. Unacknowledged answers stay stored and go out
        at the next start; call :meth:`flush` first to send them now."""
        if self._closing:
            return
        self._closing = True
        if self._uploader is not None:
            await self._uploader.flush_logs()  # stored: they go out at the next start
        self._conn.close(self._mono())
        self._do_actions()
        tasks = [t for t in (self._runner, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._link.close()
        await self._http.aclose()
        if self._storage is not None:
            await self._close_storage(self._storage)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- the loop --------------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._closing:
            self._wake.clear()
            delay: float | None
            try:
                self._pump()
                delay = self._sleep_time()
            except Exception as exc:  # never let one bad step stop the syncing...
                self._alert(exc, "loop")
                delay = 0.5  # ...nor spin on it
            await wait_woken(self._wake, delay)

    def _pump(self) -> None:
        engine = self._require_engine()
        now = self._clock()
        engine.tick(now)
        self._conn.tick(self._mono())
        self._do_actions()
        changes = self._conn.events_received()
        for change in changes:
            # Hand the save channel to the engine. A channel gained or switched, or a socket
            # that opened, retries at once; a failed socket retry behind the HTTP fallback
            # changes nothing for saves, so their own backoff stands.
            channel = change.save_channel
            if channel is None:
                engine.connection_lost(now)
            elif channel is not self._channel or change.state is ConnectionState.OPEN:
                engine.connection_restored(now)
                if self._uploader is not None:
                    self._uploader.connection_restored()
            self._channel = channel
        request = engine.next_request(now)
        if request is not None:
            channel = self._conn.save_channel
            self._spawn(self._saves.send(request, channel), "save")
        if self._link.reports_sync:
            report = self._link.reporter.due(engine.sync_state(now), self._mono())
            if report is not None:
                self._link.send(report)
        self._publish([*changes, *engine.events_received()])
        if not engine.outbox:
            for waiter in self._sync_waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _sleep_time(self) -> float | None:
        engine = self._require_engine()
        delays = []
        if (deadline := engine.next_deadline()) is not None:
            delays.append(deadline - self._clock())
        if (deadline := self._conn.next_deadline()) is not None:
            delays.append(deadline - self._mono())
        if self._link.reports_sync:
            state = engine.sync_state(self._clock())
            if (deadline := self._link.reporter.next_deadline(state)) is not None:
                delays.append(deadline - self._mono())
        return max(0.0, min(delays)) if delays else None

    def _do_actions(self) -> None:
        for action in self._conn.actions_to_do():
            if isinstance(action, Connect):
                self._spawn(self._link.connect(action.last_position), "socket")
            elif isinstance(action, Send):
                self._link.send(action.frame)
            elif isinstance(action, Drop):
                self._link.drop(TransportError(f"socket dropped: {action.reason}"))
            elif isinstance(action, Poll):
                self._spawn(self._poll(action), "poll")

    # --- socket ----------------------------------------------------------------------------------

    async def _open_socket(self, last_position: str | None) -> Socket:
        session = self._session
        assert session is not None
        # The API's token, renewed there when a request met the session's expiry or
        # revocation; a handshake refused for either renews it too.
        url = session.socket_url
        self._socket_asked_at = self._clock()  # its welcome is stamped after this
        try:
            return await self._connect_socket(url, self._http.token or "", last_position)
        except ServerError as exc:
            if exc.code not in SIGN_IN_AGAIN or not await self._http.renew():
                raise
        return await self._connect_socket(url, self._http.token or "", last_position)

    def _route(self, frame: Frame) -> None:
        """Act on a frame from the socket or from a poll."""
        if isinstance(frame, SaveAckFrame | ErrorFrame):
            self._saves.receive_frame(frame)
        elif isinstance(frame, ExamEnded):
            if self.exam_ended is not None:
                return  # heard already (a poll carries it every time, a socket after its welcome)
            self.exam_ended = frame
            self._publish([frame])
            engine = self._require_engine()
            if engine.online:  # push whatever is still pending now, not after a backoff
                engine.connection_restored(self._clock())
        elif isinstance(frame, ReloadState):
            self._publish([frame])
            self._spawn(self._reload_progress(), "reload")
        elif isinstance(frame, DeviceActive):
            self._sessions.receive_frame(frame)
        elif isinstance(frame, StageChanged | Resumed | UnknownFrame):
            self._publish([frame])
        elif isinstance(frame, Welcome):
            self._observe_server_time(frame.server_time, self._socket_asked_at, "socket")

    async def _poll(self, action: Poll) -> None:
        """In fallback: the events over HTTP, routed as the socket's would be."""
        try:
            body = await self._http.events(action.last_position)
        except ExamSyncError as exc:
            self._conn.poll_failed(str(exc), self._mono())
            return
        try:
            frames = self._conn.poll_answered(body, self._mono())
        except RemoteProtocolError as exc:
            self._publish([Alert(exc, "poll")])
            return
        for frame in frames:
            self._route(frame)

    async def _reload_progress(self) -> None:
        """Events were missed that no replay can bring back: fetch the candidate's progress
        afresh, as the login did. (Answers do not travel as events: acks settle them.)"""
        self._progress = await self._http.me()
        self._publish([ProgressReloaded(self._progress)])

    def _save_failed(self, batch_id: int, error: TransportError) -> None:
        if self._engine is not None:
            self._engine.send_failed(batch_id, error, self._clock())

    # --- helpers ---------------------------------------------------------------------------------

    def _observe_server_time(self, server_time: str, asked_at: float | None, where: str) -> None:
        """Set the edit clock by a ``serverTime`` (acks and restores do it in the engine)."""
        try:
            self._require_engine().observe_server_time(server_time, self._clock(), sent_at=asked_at)
        except ExamSyncError as exc:  # no usable time: the stored offset stands
            self._publish([Alert(exc, where)])

    def _spawn(self, coro: Coroutine[Any, Any, None], where: str) -> None:
        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an error we do not know: log it, show it, go on
                self._alert(exc, where)
            finally:
                self._wake.set()

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # A task cancelled before it ran (at close) never awaited ``coro``: close it quietly.
        task.add_done_callback(lambda _: coro.close())

    def _alert(self, exc: Exception, where: str) -> None:
        log.exception("examsync: unexpected error in %s", where, exc_info=exc)
        error = exc if isinstance(exc, ExamSyncError) else ExamSyncError(repr(exc))
        self._publish([Alert(error, where)])

    def _publish(self, events: list[Any]) -> None:
        self._publisher.publish(events)

    def _set_storage_state(self, state: StorageState) -> None:
        """Record and publish a change of the store's state (adapters call it on a change)."""
        if state != self._storage_state:
            self._storage_state = state
            self._publish([state])

    def _require_engine(self) -> Engine:
        if self._engine is None:
            raise ExamSyncError("log in first")
        return self._engine
