"""Everything a running server holds: Redis (private or external), SQLite, file store, tokens,
the socket server and the workers. Started and stopped by the app's `while_serving`."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from .access.lockout_alerts import PublishedAlerts
from .access.login import SessionService
from .access.revocations import RevocationSync
from .access.throttle import LoginThrottle
from .access.tokens import Tokens
from .answers.intake import SaveService
from .answers.restore import RestoreService
from .answers.signing import ReceiptSigner
from .answers.sink import AnswerSink
from .base.clock import iso, utc_now
from .base.private import private_dir
from .config import Settings, check_admin_token, load_or_create_secret
from .errors import StartupError
from .exam.catalog import Catalog
from .exam.lifecycle import Lifecycle
from .exam.plan_status import PlanStatus
from .exam.stage_moves import StageMoves
from .exam.stage_timer import run_stage_timer
from .media.candidate_logs import LogService
from .media.captures import CaptureService
from .media.sinks import CaptureSink, LogSink
from .pipeline.acks import AckHub
from .pipeline.persister import Persister
from .pipeline.plan_queue import PlanQueue
from .presence.snapshot import SnapshotService
from .presence.state_manager import StateManager
from .presence.sweeper import run_sweeper
from .process.embedded_redis import EmbeddedRedis
from .sockets.fanout import run_fanout
from .sockets.polling import EventPolling
from .sockets.server import SocketServer
from .store.answer_cache import AnswerCache
from .store.answers import StoredAnswers
from .store.candidates import Candidates
from .store.dead_letters import DeadLetters
from .store.files import FileStore
from .store.media import MediaRecords
from .store.sqlite import Database

log = logging.getLogger(__name__)


def check_data_dir(path: Path) -> None:
    try:
        private_dir(path)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise StartupError(f"the data dir {path} is not writable: {exc.strerror or exc}") from None


@dataclass
class Runtime:
    settings: Settings
    redis: Redis
    db: Database
    tokens: Tokens
    lifecycle: Lifecycle
    moves: StageMoves
    sessions: SessionService
    throttle: LoginThrottle
    saves: SaveService
    captures: CaptureService
    logs: LogService
    files: FileStore
    media_records: MediaRecords
    candidates: Candidates
    restores: RestoreService
    snapshots: SnapshotService
    polling: EventPolling
    dead_letters: DeadLetters
    signer: ReceiptSigner
    hub: AckHub
    revocations: RevocationSync
    sockets: SocketServer | None
    embedded: EmbeddedRedis | None = None
    persister: Persister | None = None  # None in the HTTP processes of `serve --processes N`
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # What `start` started, released in reverse by `stop`.
    _exit: AsyncExitStack = field(default_factory=AsyncExitStack, init=False, repr=False)

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        """Start the stores, the socket server and the workers, in that order.

        Each part registers its release on an exit stack as soon as it is started, so a step
        that fails releases everything the steps before it started (no redis-server, task,
        connection or listener is left behind); `stop` unwinds the same stack."""
        async with AsyncExitStack() as stack:
            runtime = await cls._start(settings, stack)
            runtime._exit = stack.pop_all()
        return runtime

    @classmethod
    async def _start(cls, settings: Settings, stack: AsyncExitStack) -> Runtime:
        data_dir = settings.storage.data_dir
        check_data_dir(data_dir)
        secret, _ = load_or_create_secret(data_dir, "secret_key", settings.access.secret_key)
        admin, _ = load_or_create_secret(data_dir, "admin_token", settings.access.admin_token)
        check_admin_token(admin)  # one from the data dir's file too
        redis, embedded = await _open_redis(settings, stack)
        db = await Database.open(settings.storage.sqlite_path)
        stack.push_async_callback(_bounded, "sqlite", db.close)
        tokens = Tokens(secret, admin, settings.access.session_ttl_seconds)
        revocations = RevocationSync(
            tokens.revoked,
            db,
            redis,
            settings.access.session_ttl_seconds,
            settings.access.revocation_reload_seconds,
        )
        files = FileStore(private_dir(settings.storage.files_dir))
        lifecycle = Lifecycle(settings, db, redis, files, on_revoke=revocations.announce)
        catalog = Catalog(db, files)
        hub = AckHub(redis, settings.process.node_id, settings.pipeline.ack_timeout_seconds)
        signer = await asyncio.to_thread(ReceiptSigner.load, data_dir / "receipt_keys")
        queue = PlanQueue(redis, hub, settings.pipeline.late_grace_seconds)
        candidates = Candidates(db)
        connections = settings.connections
        throttle = LoginThrottle(redis, settings.logins, alerts=[PublishedAlerts(redis)])
        runtime = cls(
            settings=settings,
            redis=redis,
            db=db,
            tokens=tokens,
            lifecycle=lifecycle,
            moves=StageMoves(lifecycle.views, lifecycle.live),
            sessions=SessionService(db, tokens, lifecycle, throttle),
            throttle=throttle,
            saves=SaveService(catalog, queue, settings),
            captures=CaptureService(redis, catalog, files, queue),
            logs=LogService(files, queue),
            files=files,
            media_records=MediaRecords(db),
            candidates=candidates,
            restores=RestoreService(StoredAnswers(db), AnswerCache(redis), catalog),
            snapshots=SnapshotService(candidates, redis, throttle),
            polling=EventPolling(redis, connections.ping_interval + connections.ping_timeout),
            dead_letters=DeadLetters(db, redis),
            signer=signer,
            hub=hub,
            revocations=revocations,
            sockets=None,
            embedded=embedded,
        )
        listening = asyncio.Event()
        await _started(runtime._spawn(stack, hub.listen(listening), "acks"), listening)
        # Subscribed before the first load: a revocation made in between is in one or the other.
        listening = asyncio.Event()
        await _started(
            runtime._spawn(stack, revocations.listen(listening), "revocations"), listening
        )
        await revocations.load()
        runtime._spawn(stack, revocations.reload_every(), "revocation-reload")
        if settings.process.run_socket_server:
            await runtime._start_sockets(stack)
        if settings.process.run_persister:
            runtime._start_persister(stack)
        if settings.process.run_workers:
            await runtime._start_workers(stack)
        return runtime

    async def _start_sockets(self, stack: AsyncExitStack) -> None:
        settings = self.settings
        sockets = SocketServer(
            self.tokens,
            settings.listen.socket_host,
            settings.listen.socket_port,
            settings.process.reuse_port,
            self.redis,
            node_id=settings.process.node_id,
            ping_interval=settings.connections.ping_interval,
            ping_timeout=settings.connections.ping_timeout,
            saves=self.saves,
            handshake_limit=settings.connections.handshake_limit,
            handshake_window=settings.connections.handshake_window_seconds,
        )
        await sockets.start()
        stack.push_async_callback(_bounded, "socket server", sockets.stop)
        self.sockets = sockets
        self.tokens.revoked.on_change(sockets.close_revoked)
        ready = asyncio.Event()
        await _started(
            self._spawn(stack, run_fanout(self.redis, sockets.registry, ready), "fanout"), ready
        )

    def _start_persister(self, stack: AsyncExitStack) -> None:
        settings = self.settings
        pipeline = settings.pipeline
        persister = Persister(
            settings.storage.sqlite_path,
            self.redis,
            self.hub,
            self.dead_letters,
            settings.process.node_id,
            [AnswerSink(self.redis, self.signer), CaptureSink(self.redis), LogSink(self.redis)],
            claim_idle_ms=pipeline.claim_idle_ms,
            max_attempts=pipeline.max_persist_attempts,
            linger_ms=pipeline.commit_linger_ms,
        )
        stack.callback(persister.close)
        self.persister = persister
        self._spawn(stack, persister.run(self.live_plans), "persister")

    async def _start_workers(self, stack: AsyncExitStack) -> None:
        settings = self.settings
        node_id = settings.process.node_id
        pipeline = settings.pipeline
        state_manager = StateManager(
            self.redis,
            self.candidates,
            self.dead_letters,
            node_id,
            claim_idle_ms=pipeline.claim_idle_ms,
            max_attempts=pipeline.max_persist_attempts,
        )
        ready = asyncio.Event()
        await _started(self._spawn(stack, state_manager.run(ready), "state-manager"), ready)
        connections = settings.connections
        sweeper = run_sweeper(
            self.redis, node_id, connections.sweep_tick, connections.lost_after_seconds
        )
        self._spawn(stack, sweeper, "sweeper")
        timers = settings.timers
        stage_timer = run_stage_timer(
            self.lifecycle, self.moves, timers.stage_tick_seconds, timers.repair_interval_seconds
        )
        self._spawn(stack, stage_timer, "stage-timer")

    def _spawn(
        self, stack: AsyncExitStack, work: Coroutine[Any, Any, None], name: str
    ) -> asyncio.Task[None]:
        """A background task of this runtime, cancelled when the stack unwinds."""
        task = asyncio.create_task(work, name=name)
        self.tasks.append(task)
        stack.push_async_callback(_bounded, f"the {name} task", functools.partial(_cancel, task))
        return task

    async def live_plans(self) -> list[str]:
        """Plans whose answer streams may hold saves: started, or ended within a day."""
        since = iso(utc_now() - timedelta(days=1))
        found = await self.lifecycle.plans.with_status(
            (PlanStatus.IN_PROGRESS,), PlanStatus.COMPLETED, since
        )
        return [plan_id for plan_id, _ in found]

    def socket_url(self, request_host: str | None) -> str:
        """The URL clients should open: configured, else this request's host on our port."""
        if self.settings.listen.public_socket_url:
            return self.settings.listen.public_socket_url
        if self.sockets is None:
            return ""
        host = (
            urlsplit(f"//{request_host}").hostname if request_host else None
        ) or self.settings.listen.socket_host
        if ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{self.sockets.port}/ws"

    async def stop(self) -> None:
        """Stop workers, sockets and stores, newest first, each step bounded so a stuck one
        cannot hold the process past its supervisor's patience (an orderly stop keeps AOF and
        WAL clean). The tasks go first, together, under one bound: one each would add up."""
        await _bounded("the tasks", lambda: asyncio.gather(*map(_cancel, self.tasks)))
        await self._exit.aclose()
        log.info("stopped")


async def _open_redis(
    settings: Settings, stack: AsyncExitStack
) -> tuple[Redis, EmbeddedRedis | None]:
    """The Redis client, on the configured Redis or on a private redis-server started here."""
    embedded = None
    url = settings.storage.redis_url
    if not url:
        # Started from this (the main) thread: its death signal is tied to the thread that
        # forked it, and a pool thread may end before the server does.
        embedded = EmbeddedRedis.start_sync(settings.storage.data_dir / "redis")
        stack.push_async_callback(asyncio.to_thread, embedded.stop)
        url = embedded.url
    # A blocking pool: a burst of requests waits for a free connection instead of failing
    # with "Too many connections".
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=settings.storage.redis_max_connections,
        timeout=10,
        decode_responses=True,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
    )
    redis = Redis.from_pool(pool)  # owns the pool: aclose() closes its connections
    stack.push_async_callback(_bounded, "redis client", redis.aclose)
    try:
        await redis.ping()
    except RedisError as exc:
        raise StartupError(f"cannot reach Redis at {url}: {exc}") from None
    return redis, embedded


async def _started(task: asyncio.Task[None], ready: asyncio.Event, seconds: float = 10.0) -> None:
    """Wait until `task` sets `ready`; a task that ends first fails the start with its error
    at once, rather than after the timeout."""
    task.add_done_callback(lambda _: ready.set())
    try:
        await asyncio.wait_for(ready.wait(), seconds)
    except TimeoutError:
        raise StartupError(f"{task.get_name()} did not start within {seconds:.0f} s") from None
    if task.done():
        task.result()  # raises what ended it
        raise StartupError(f"{task.get_name()} ended during start-up")


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


# Container allocations between two collections of the youngest generation (CPython: 700): at
# 700 the requests in flight are walked over and over (docs/server.md, "Saves over the socket").
GC_YOUNG_THRESHOLD = 50_000


def freeze_startup_heap() -> None:
    """In a server process, once started: the objects of start-up (modules, the app, plans)
    leave the cycle collector's view (`gc.freeze`), so no full collection walks them while
    requests wait; the youngest generation is then collected every GC_YOUNG_THRESHOLD
    allocations (docs/server.md, "Start-up heap frozen")."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def lower_priority(nice: int) -> None:
    """Raise this process's niceness by `nice` (Settings.nice)."""
    if nice:
        os.nice(nice)


async def _bounded(what: str, stop: Callable[[], Awaitable[object]], seconds: float = 5.0) -> None:
    log.info("stopping %s", what)
    try:
        await asyncio.wait_for(stop(), seconds)
    except TimeoutError:
        log.warning("%s did not stop within %.0f s; going on", what, seconds)
