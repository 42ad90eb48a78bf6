"""Everything a running server holds: Redis (private or external), SQLite, file store, tokens,
the socket server and the workers. Started and stopped by the app's `while_serving`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .auth import Tokens
from .config import Settings, load_or_create_secret
from .embedded import EmbeddedRedis
from .errors import StartupError
from .lifecycle import Lifecycle
from .sessions import SessionService
from .sockets.server import SocketServer
from .store.files import FileStore
from .store.sqlite import Database
from .workers.fanout import run_fanout
from .workers.stage_timer import run_stage_timer

log = logging.getLogger(__name__)


def check_data_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
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
    sessions: SessionService
    sockets: SocketServer | None
    embedded: EmbeddedRedis | None = None
    admin_token_created: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        check_data_dir(settings.data_dir)
        secret, _ = load_or_create_secret(settings.data_dir, "secret_key", settings.secret_key)
        admin, admin_created = load_or_create_secret(
            settings.data_dir, "admin_token", settings.admin_token
        )
        embedded = None
        url = settings.redis_url
        if not url:
            embedded = await EmbeddedRedis.start(settings.data_dir / "redis")
            url = embedded.url
        redis = Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=10,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        try:
            await redis.ping()
        except RedisError as exc:
            if embedded:
                embedded.stop()
            raise StartupError(f"cannot reach Redis at {url}: {exc}") from None
        db = await Database.open(settings.sqlite_path)
        tokens = Tokens(secret, admin, settings.session_ttl_seconds)
        lifecycle = Lifecycle(settings, db, redis, FileStore(settings.files_dir))
        runtime = cls(
            settings=settings,
            redis=redis,
            db=db,
            tokens=tokens,
            lifecycle=lifecycle,
            sessions=SessionService(db, tokens, lifecycle),
            sockets=None,
            embedded=embedded,
            admin_token_created=admin_created,
        )
        if settings.run_socket_server:
            runtime.sockets = SocketServer(tokens, settings.socket_host, settings.socket_port)
            await runtime.sockets.start()
            ready = asyncio.Event()
            runtime.tasks.append(
                asyncio.create_task(
                    run_fanout(redis, runtime.sockets.registry, ready), name="fanout"
                )
            )
            await asyncio.wait_for(ready.wait(), timeout=10)
        if settings.run_workers:
            runtime.tasks.append(
                asyncio.create_task(
                    run_stage_timer(
                        lifecycle, settings.stage_tick_seconds, settings.repair_interval_seconds
                    ),
                    name="stage-timer",
                )
            )
        return runtime

    def socket_url(self, request_host: str | None) -> str:
        """The URL clients should open: configured, else this request's host on our port."""
        if self.settings.public_socket_url:
            return self.settings.public_socket_url
        if self.sockets is None:
            return ""
        host = (
            urlsplit(f"//{request_host}").hostname if request_host else None
        ) or self.settings.socket_host
        if ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{self.sockets.port}/ws"

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.sockets is not None:
            await self.sockets.stop()
        await self.db.close()
        await self.redis.aclose()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)
