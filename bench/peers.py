"""The baselines the socket benchmarks hold examsync against, each a server process of its own:

- `raw`: a bare `websockets` server whose broadcast is one `websockets.broadcast` call — the
  floor for the library the socket server is built on;
- `socketio`: a python-socketio `AsyncServer` on uvicorn (its ASGI mode, the usual deployment),
  emitting to a room — what a Python team would otherwise pick.

Both run on uvloop, as `examsync serve` does, with permessage-deflate on or off as examsync
negotiated it in the same run (it changes memory and broadcast cost several-fold), their
heartbeats stretched so that idle clients stay idle, and library defaults otherwise.

Clients are `websockets` connections; the Socket.IO ones speak Engine.IO 4 over a WebSocket
(what a socket.io client with `transports: ["websocket"]` does), because python-socketio's own
AsyncClient would cost the load generator far more than the server it measures.

    python bench/peers.py raw|socketio PORT deflate|plain      (started by `measure`)
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import dataclass

from benchlib import bounded, broadcast_times, close_all, deflate_negotiated, free_port, rss_bytes
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, broadcast, serve

from examsync.frames import exam_end_message as exam_end_frame
from examsync_server.demo.sample import PLAN_ID

RAW, SOCKETIO = "raw", "socketio"
KINDS = (RAW, SOCKETIO)
IDLE_HEARTBEAT = 600  # seconds; the same stretch bench/sockets.py gives examsync's pings
CONTROL_PATH = "/go"
MARKER = '"exam_end"'  # in every exam_end frame, and in no other frame the waiting clients get


def exam_end_message() -> dict[str, object]:
    """The payload every server sends: examsync's own exam_end frame."""
    return exam_end_frame(PLAN_ID, "2024-01-16T18:00:00Z")


# --- the servers ------------------------------------------------------------------------------


async def serve_raw(port: int, deflate: bool) -> None:
    sockets: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        if ws.request.path == CONTROL_PATH:
            async for message in ws:  # each message is broadcast as it is
                broadcast(sockets, message)
            return
        sockets.add(ws)
        try:
            await ws.wait_closed()
        finally:
            sockets.discard(ws)

    compression = "deflate" if deflate else None
    async with serve(handler, "127.0.0.1", port, ping_interval=None, compression=compression):
        await asyncio.Future()


def serve_socketio(port: int, deflate: bool) -> None:
    import socketio
    import uvicorn

    sio = socketio.AsyncServer(
        async_mode="asgi", ping_interval=IDLE_HEARTBEAT, ping_timeout=IDLE_HEARTBEAT
    )

    async def connect(sid: str, environ: dict[str, object], auth: object) -> None:
        # The controller stays out of the room it triggers the broadcast to.
        if not (isinstance(auth, dict) and auth.get("control")):
            await sio.enter_room(sid, PLAN_ID)

    async def end(sid: str, data: object) -> None:
        await sio.emit("exam_end", data, room=PLAN_ID)

    sio.on("connect", connect)
    sio.on("end", end)
    uvicorn.run(
        socketio.ASGIApp(sio),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        ws_per_message_deflate=deflate,
    )


# --- the clients ------------------------------------------------------------------------------


async def open_client(kind: str, port: int, control: bool = False) -> ClientConnection:
    """A connected client of a peer, past every handshake (ping_interval=None: no per-socket
    keepalive task here; the servers' heartbeats are stretched anyway)."""
    if kind == RAW:
        path = CONTROL_PATH if control else "/"
        return await connect(f"ws://127.0.0.1:{port}{path}", ping_interval=None, open_timeout=60)
    ws = await connect(
        f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket",
        ping_interval=None,
        open_timeout=60,
    )
    opened = await ws.recv()  # Engine.IO OPEN: 0{"sid": …}
    if not str(opened).startswith("0"):
        raise RuntimeError(f"not an Engine.IO open packet: {opened!r}")
    await ws.send("40" + (json.dumps({"control": True}) if control else ""))  # Socket.IO CONNECT
    joined = await ws.recv()
    if not str(joined).startswith("40"):
        raise RuntimeError(f"Socket.IO connect refused: {joined!r}")
    return ws


async def trigger(kind: str, control: ClientConnection) -> None:
    """Ask the peer to send the exam_end message to every client."""
    message = exam_end_message()
    if kind == RAW:
        await control.send(json.dumps(message, ensure_ascii=False))
    else:
        await control.send("42" + json.dumps(["end", message], ensure_ascii=False))


@dataclass
class PeerRun:
    kind: str
    sockets: int
    connect_s: float
    idle_bytes: float  # RSS growth per socket, connected and idle
    after_bytes: float  # the same after the broadcast
    deflate: bool
    broadcast: list[float]  # ms from the trigger to each socket's arrival


async def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the {port} peer exited with {process.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
        else:
            writer.close()
            return
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


async def measure(kind: str, count: int, deflate: bool, parallel: int = 100) -> PeerRun:
    """Start the peer, connect `count` clients, broadcast; memory and arrival times."""
    port = free_port()
    mode = "deflate" if deflate else "plain"
    process = subprocess.Popen(
        [sys.executable, __file__, kind, str(port), mode], stdin=subprocess.DEVNULL
    )
    clients: list[ClientConnection] = []
    try:
        await wait_port(port, process)
        control = await open_client(kind, port, control=True)  # also warms the code paths
        before = rss_bytes(process.pid)
        started = time.perf_counter()
        clients = await bounded(count, lambda _: open_client(kind, port), parallel)
        connect_s = time.perf_counter() - started
        await asyncio.sleep(1)  # let the last handshakes finish on the server
        idle = rss_bytes(process.pid)
        # Timed the second time: the first one per socket pays for first-use setup (the deflate
        # state, buffers) that a live exam's earlier messages would already have paid.
        for _ in range(2):
            times, _ = await broadcast_times(clients, MARKER, lambda: trigger(kind, control))
        after = rss_bytes(process.pid)
        await control.close()
        return PeerRun(
            kind,
            count,
            connect_s,
            (idle - before) / count,
            (after - before) / count,
            deflate_negotiated(clients[0]),
            times,
        )
    finally:
        # Killed: its orderly shutdown is not measured, and uvicorn's closes 10,000 websockets
        # one by one.
        process.kill()
        await asyncio.to_thread(process.wait, 30)
        await close_all(clients)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in KINDS or sys.argv[3] not in ("deflate", "plain"):
        raise SystemExit(f"usage: peers.py {'|'.join(KINDS)} PORT deflate|plain")
    which, where, compress = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "deflate"
    if which == RAW:
        import uvloop

        uvloop.run(serve_raw(where, compress))
    else:
        serve_socketio(where, compress)
