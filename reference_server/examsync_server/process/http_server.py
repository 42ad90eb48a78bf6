"""The HTTP server under the Quart app: Hypercorn (Quart's own) or uvicorn (httptools, uvloop).

Both serve the same ASGI app with the same lifespan; `bench/saves.py --http-server` compares
them. The socket server is not affected: it is its own `websockets` server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from quart import Quart

from ..config import Settings


def event_loop_runner(settings: Settings) -> Callable[[Coroutine[Any, Any, None]], None]:
    """How to run the server's coroutine: uvloop with uvicorn when it is installed."""
    if settings.process.http_server == "uvicorn":
        with contextlib.suppress(ImportError):
            import uvloop

            return lambda main: uvloop.run(main)
    return asyncio.run


async def serve_http(app: Quart, settings: Settings, stop: asyncio.Event) -> None:
    """Serve until `stop` is set, then shut down gracefully."""
    if settings.process.http_server == "uvicorn":
        await _uvicorn(app, settings, stop)
    else:
        await _hypercorn(app, settings, stop)


async def _hypercorn(app: Quart, settings: Settings, stop: asyncio.Event) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{settings.listen.host}:{settings.listen.port}"]
    config.accesslog = None
    config.graceful_timeout = 5
    # Hypercorn has one idle read timeout, for headers and bodies alike; no connection cap.
    config.read_timeout = max(1, round(settings.http.body_idle_timeout_seconds))
    await serve(app, config, shutdown_trigger=stop.wait)


async def _uvicorn(app: Quart, settings: Settings, stop: asyncio.Event) -> None:
    import uvicorn

    from .http_protocol import guarded_protocol

    sockets = (
        [_reusable_socket(settings.listen.host, settings.listen.port)]
        if settings.process.reuse_port
        else None
    )
    config = uvicorn.Config(
        app,
        host=settings.listen.host,
        port=settings.listen.port,
        # httptools with the header and body timeouts and the connection cap (http_protocol.py)
        http=guarded_protocol(settings.http),
        lifespan="on",
        access_log=False,
        # Served directly, not behind a proxy: no per-request header rewriting or extra headers.
        proxy_headers=False,
        server_header=False,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn would take SIGINT/SIGTERM and re-raise them after its shutdown, killing
            # us before the runtime stops; the caller owns the signals and sets `stop`.
            yield

    server = Server(config)

    async def stopper() -> None:
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.create_task(stopper())
    try:
        await server.serve(sockets=sockets)
    finally:
        watcher.cancel()


__all__ = ["event_loop_runner", "serve_http"]


def _reusable_socket(host: str, port: int) -> socket.socket:
    """A listening socket several processes can bind at once (the kernel spreads accepts)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock
