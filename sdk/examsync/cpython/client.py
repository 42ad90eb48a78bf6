"""ExamClient: one candidate in one plan, on CPython (asyncio, httpx, websockets, sqlite3).

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

Everything runs on one event loop thread, so the machines need no locks. Local writes
(``set_answer``...) are plain methods: they return once SQLite has the change on disk.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any

import httpx

from ..connection import (
    Connect,
    Connection,
    ConnectionState,
    Drop,
    Poll,
    SaveChannel,
    Send,
)
from ..engine import Engine, EngineConfig, SaveRequest
from ..events import Alert, ProgressReloaded, RestoreReport, SyncState
from ..exceptions import (
    ExamSyncError,
    ReceiptError,
    RemoteProtocolError,
    ServerError,
    TransportError,
)
from ..frames import (
    ErrorFrame,
    ExamEnded,
    Frame,
    ReloadState,
    Resumed,
    SaveAckFrame,
    StageChanged,
    UnknownFrame,
    save_frame,
)
from ..messages import Receipt, SaveAck
from ..protocol import decode_json
from ..receipts import receipts_in
from ..storage import LocalAnswer
from ..sync_report import SYNC_STATE_FEATURE, SyncReporter
from ._local import SessionCache, package_dir, store_path
from ._publisher import Publisher
from .config import ClientConfig, ClientEvent, default_device
from .receipts import Ed25519Verifier, cryptography_available
from .storage import SQLiteStorage
from .transport import HttpTransport, Package, Session, SocketTransport

__all__ = ["ClientConfig", "ClientEvent", "ExamClient", "default_device"]

log = logging.getLogger("examsync")


class ExamClient:
    """The async client (see the module docstring and docs/sdk.md)."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        http_client: httpx.AsyncClient | None = None,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``http_client`` lets tests pass one built on ``httpx.MockTransport``."""
        self.config = config
        self._http = HttpTransport(
            config.base_url, client=http_client, timeout=config.request_timeout
        )
        self._rng, self._clock, self._mono = rng, clock, monotonic
        if config.verify_receipts and not cryptography_available():
            # Fail now, not at the first ack.
            raise ExamSyncError(
                "verifying receipts needs the 'cryptography' package: install it, or pass"
                " ClientConfig(verify_receipts=False)"
            )
        self._verifier: Ed25519Verifier | None = None
        self._session: Session | None = None
        self._storage: SQLiteStorage | None = None
        self._engine: Engine | None = None
        self._conn = Connection(config.connection, rng)
        self._socket: SocketTransport | None = None
        self._channel: SaveChannel | None = None  # the save channel the engine was last given
        self._ws_pending: dict[str, int] = {}  # socket request id -> engine batch id
        self._reporter = SyncReporter()  # answers waiting here, told to the supervisors
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._publisher: Publisher[ClientEvent] = Publisher()
        self._sync_waiters: list[asyncio.Future[None]] = []
        self._closing = False
        self.exam_ended: ExamEnded | None = None
        self._progress: Mapping[str, Any] = {}

    # --- start -----------------------------------------------------------------------------------

    async def login(
        self,
        *,
        candidate_id: str | None = None,
        auth_code: str | None = None,
        key: str | None = None,
    ) -> Session:
        """Log in (web: candidate id + auth code; or key), open the local store, start syncing.

        Offline, a session cached by an earlier login with the same credentials is used, so a
        restarted client keeps taking answers. Raises StoreLockedError if another client holds
        this candidate's store past ``lock_timeout``.
        """
        if self._session is not None:
            raise ExamSyncError("already logged in")
        config = self.config
        cache = SessionCache(
            config.store_dir, config.base_url, config.plan_id, candidate_id, auth_code, key
        )
        online = True
        try:
            session = await self._http.login(
                config.plan_id, candidate_id=candidate_id, auth_code=auth_code, key=key
            )
            cache.save(session)
        except TransportError as exc:
            session = cache.load_or_raise(exc)
            self._http.token = session.token
            online = False
        path = store_path(config.store_dir, config.plan_id, session.candidate_id, config.exam_code)
        # Waiting for the lock blocks: keep it off the event loop.
        storage = await asyncio.to_thread(SQLiteStorage, path, lock_timeout=config.lock_timeout)
        engine_config = EngineConfig(
            plan_id=config.plan_id,
            exam_code=config.exam_code,
            candidate_id=session.candidate_id,
            device=config.device,
            max_batch=config.max_batch,
            request_timeout=config.request_timeout,
        )
        try:
            self._engine = Engine(engine_config, storage, self._rng)
        except ExamSyncError:
            storage.close()
            raise
        self._storage, self._session = storage, session
        progress = session.raw.get("progress")
        self._progress = progress if isinstance(progress, Mapping) else {}
        if config.restore_on_start and online:
            try:
                await self.restore()
            except ExamSyncError as exc:  # unreachable or refused: local answers still stand
                self._publish([Alert(exc, "restore")])
        self._conn.start(self._mono())
        self._runner = asyncio.create_task(self._run(), name="examsync-client")
        return session

    async def download_package(self) -> Package:
        """The exam package, verified by SHA-256 and cached for offline use."""
        self._require_engine()
        return await self._http.package(
            self.config.plan_id, package_dir(self.config.store_dir, self.config.plan_id)
        )

    # --- local input (durable when they return) --------------------------------------------------

    def set_answer(self, quiz_code: str, value: str) -> int:
        """Store the answer durably and queue it; return its version."""
        version = self._require_engine().set_answer(quiz_code, value, self._clock())
        self._wake.set()
        return version

    def record_navigation(self, from_quiz: str, to_quiz: str) -> None:
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
    def answers(self) -> Mapping[str, LocalAnswer]:
        return self._require_engine().answers

    @property
    def receipts(self) -> Mapping[str, Receipt]:
        """The latest verified receipt per question (the server's signed acknowledgement)."""
        return self._require_engine().receipts

    @property
    def sync_state(self) -> SyncState:
        return self._require_engine().sync_state(self._clock())

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
        body = await self._http.restore(self.config.exam_code)
        report = engine.receive_restore(body, self._clock())
        if report.unconfirmed:
            log.warning("restore does not honour receipts for %s", report.unconfirmed)
        self._wake.set()
        if self._runner is None:  # before the loop runs: publish the report ourselves
            self._publish(engine.events_received())
        return report

    # --- events ----------------------------------------------------------------------------------

    def add_listener(self, callback: Callable[[ClientEvent], None]) -> Callable[[], None]:
        """Call ``callback`` with every event (on the loop thread); returns its remover."""
        return self._publisher.add_listener(callback)

    def events(self) -> AsyncIterator[ClientEvent]:
        """Every event from now on, as an async iterator."""
        return self._publisher.events()

    # --- stop ------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop syncing and release the store. Unacknowledged answers stay on disk and go out
        at the next start; call :meth:`flush` first to send them now."""
        if self._closing:
            return
        self._closing = True
        self._conn.close(self._mono())
        self._do_actions()
        tasks = [t for t in (self._runner, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._socket is not None:
            await self._socket.close()
            self._socket = None
        await self._http.aclose()
        if self._storage is not None:
            self._storage.close()

    async def __aenter__(self) -> ExamClient:
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
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass

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
            self._channel = channel
        request = engine.next_request(now)
        if request is not None:
            channel = self._conn.save_channel
            self._spawn(self._send_save(request, channel), "save")
        if self._reports_sync() and self._socket is not None:
            report = self._reporter.due(engine.sync_state(now), self._mono())
            if report is not None:
                self._spawn(self._send_frame(self._socket, report), "socket")
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
        if self._reports_sync():
            state = engine.sync_state(self._clock())
            if (deadline := self._reporter.next_deadline(state)) is not None:
                delays.append(deadline - self._mono())
        return max(0.0, min(delays)) if delays else None

    def _do_actions(self) -> None:
        for action in self._conn.actions_to_do():
            if isinstance(action, Connect):
                self._spawn(self._connect(action), "socket")
            elif isinstance(action, Send):
                if self._socket is not None:
                    self._spawn(self._send_frame(self._socket, action.frame), "socket")
            elif isinstance(action, Drop):
                self._drop_socket(TransportError(f"socket dropped: {action.reason}"))
            elif isinstance(action, Poll):
                self._spawn(self._poll(action), "poll")

    # --- socket ----------------------------------------------------------------------------------

    async def _connect(self, action: Connect) -> None:
        session = self._session
        assert session is not None
        try:
            socket = await SocketTransport.connect(
                session.socket_url,
                session.token,
                last_position=action.last_position,
                open_timeout=self.config.open_timeout,
            )
        except ExamSyncError as exc:
            if isinstance(exc, ServerError) and not exc.retryable:  # a bad token...: say so
                self._publish([Alert(exc, "socket")])
            wait = exc.retry_after if isinstance(exc, ServerError) else None
            self._conn.connect_failed(str(exc), self._mono(), wait)
            self._wake.set()
            return
        if self._closing or self._conn.state is not ConnectionState.CONNECTING:
            await socket.close()
            return
        self._socket = socket
        self._reporter.socket_opened()
        self._conn.connection_made(self._mono())
        self._spawn(self._read(socket), "socket")
        self._wake.set()

    async def _read(self, socket: SocketTransport) -> None:
        while True:
            try:
                data = await socket.recv()
            except TransportError as exc:
                if socket is self._socket:  # not dropped by us: the peer or network closed it
                    self._socket = None
                    self._conn.connection_lost(str(exc), self._mono())
                    self._fail_socket_saves(exc)
                self._wake.set()
                return
            try:
                frame = self._conn.receive_frame(data, self._mono())
            except RemoteProtocolError as exc:
                self._publish([Alert(exc, "socket")])
                continue
            finally:
                self._wake.set()  # a frame may have queued a pong or changed the channel
            self._route(frame)

    def _route(self, frame: Frame) -> None:
        """Act on a frame from the socket or from a poll."""
        if isinstance(frame, SaveAckFrame):
            batch = self._ws_pending.pop(frame.request_id, None)
            if batch is not None:
                self._spawn(self._deliver(batch, 200, dict(frame.body)), "save")
        elif isinstance(frame, ErrorFrame):
            batch = self._ws_pending.pop(frame.request_id or "", None)
            if batch is not None:
                engine = self._require_engine()
                engine.receive_save_response(batch, frame.status, dict(frame.body), self._clock())
            else:
                error = ServerError(
                    str(frame.body.get("error")), code="socket_error", status=frame.status
                )
                self._publish([Alert(error, "socket")])
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
        elif isinstance(frame, StageChanged | Resumed | UnknownFrame):
            self._publish([frame])

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

    async def _send_frame(self, socket: SocketTransport, frame: str) -> None:
        try:
            await socket.send(frame)
        except TransportError:
            pass  # the reader sees the closed socket and reports it once

    def _drop_socket(self, error: TransportError) -> None:
        socket, self._socket = self._socket, None
        if socket is not None:
            socket.abort()
        self._fail_socket_saves(error)

    def _fail_socket_saves(self, error: TransportError) -> None:
        pending, self._ws_pending = self._ws_pending, {}
        if self._engine is not None:
            for batch in pending.values():
                self._engine.send_failed(batch, error, self._clock())

    def _reports_sync(self) -> bool:
        """The open socket's server takes ``sync_state`` reports (its welcome says so)."""
        welcome = self._conn.welcome
        return (
            self._conn.state is ConnectionState.OPEN
            and welcome is not None
            and SYNC_STATE_FEATURE in welcome.features
        )

    # --- saves and receipts ----------------------------------------------------------------------

    async def _send_save(self, request: SaveRequest, channel: SaveChannel | None) -> None:
        engine = self._require_engine()
        socket = self._socket
        if channel is SaveChannel.SOCKET and socket is not None:
            request_id = str(request.batch_id)
            self._ws_pending[request_id] = request.batch_id
            try:
                await socket.send(save_frame(request_id, request.body))
            except TransportError as exc:
                self._ws_pending.pop(request_id, None)
                engine.send_failed(request.batch_id, exc, self._clock())
            return  # the ack comes through _read
        try:
            status, body = await self._http.save(request.body)
        except TransportError as exc:
            engine.send_failed(request.batch_id, exc, self._clock())
            return
        await self._deliver(request.batch_id, status, body)

    async def _deliver(self, batch_id: int, status: int, body: bytes | dict[str, Any]) -> None:
        """Verify an ack's receipts, then hand it to the engine; a bad receipt fails the send."""
        engine = self._require_engine()
        if self.config.verify_receipts and 200 <= status < 300:
            try:
                ack = SaveAck.from_wire(decode_json(body) if isinstance(body, bytes) else body)
            except RemoteProtocolError:
                pass  # malformed: the engine refuses it and reports why
            else:
                try:
                    await self._verify(receipts_in(ack))
                except ExamSyncError as exc:
                    if isinstance(exc, ReceiptError):
                        self._publish([Alert(exc, "save")])
                    engine.send_failed(batch_id, exc, self._clock())
                    return
        engine.receive_save_response(batch_id, status, body, self._clock())

    async def _verify(self, receipts: Mapping[str, Receipt]) -> None:
        if not receipts:
            return
        verifier = self._verifier
        if verifier is None or not all(verifier.knows(r.key_id) for r in receipts.values()):
            # First use, or the server rotated its key: fetch the published keys again.
            verifier = self._verifier = Ed25519Verifier(await self._http.keys())
        for code, receipt in receipts.items():
            verifier.verify(code, receipt)

    # --- helpers ---------------------------------------------------------------------------------

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

    def _require_engine(self) -> Engine:
        if self._engine is None:
            raise ExamSyncError("log in first")
        return self._engine
