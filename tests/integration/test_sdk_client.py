"""The SDK's CPython client against the real reference server (issue 4).

Real `examsync serve` processes with real Redis and SQLite on 127.0.0.1; between client and
server, where a test needs it, a TcpProxy (proxy.py) that the test cuts, heals and pauses. The
measure of every test is the server's SQLite file: after the trouble, the `answer` table holds
exactly the client's final answers, values and versions.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from examsync import (
    AckStatus,
    Alert,
    AnswerAcknowledged,
    AnswerOverridden,
    ConnectionChanged,
    ConnectionState,
    DeliveryFailure,
    ExamEnded,
    RestoreReport,
    SyncStatus,
    TransportError,
)
from examsync.cpython import ClientEvent, ExamClient
from examsync.protocol import value_sha256
from examsync.receipts import parse_public_keys
from examsync_server.demo.sample import sample_package, sample_plan

from .conftest import ServerProcess, free_port, start_server
from .proxy import TcpProxy
from .sdk_process import (
    AUTH_CODE,
    CANDIDATE,
    EXAM_CODE,
    FIRST,
    PLAN_ID,
    REST,
    client_config,
)

CODES = ("Q001", "Q002", "Q003", "Q004", "Q005")
Answers = dict[str, tuple[str, int]]  # quiz code -> (value, version)


# --- the server side -----------------------------------------------------------------------------


def serve_exam(
    data_dir: Path,
    redis_url: str,
    servers: list[ServerProcess],
    device_policy: str | None = None,
    **options: Any,
) -> ServerProcess:
    """A server with the sample plan imported, packaged, prepared and started."""
    server = start_server(data_dir, redis_url, **options)
    servers.append(server)
    imported = sample_plan(candidates=2)
    if device_policy is not None:
        imported["exam_plan"]["device_policy"] = device_policy
    plan = server.admin("PUT", f"/api/v1/admin/plans/{PLAN_ID}", json=imported)
    assert plan.status_code == 201, plan.text
    package = sample_package()
    uploaded = server.admin(
        "PUT",
        f"/api/v1/admin/plans/{PLAN_ID}/package",
        content=package,
        headers={"X-Content-SHA256": hashlib.sha256(package).hexdigest()},
    )
    assert uploaded.status_code == 200, uploaded.text
    for step in ("prepare", "start"):
        response = server.admin("POST", f"/api/v1/admin/plans/{PLAN_ID}/{step}")
        assert response.status_code == 200, response.text
    return server


def read_db(path: Path, sql: str, *args: Any) -> list[Any]:
    """Rows of a query on a SQLite file that a live process writes (read-only, WAL)."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return db.execute(sql, args).fetchall()


def stored_answers(server: ServerProcess) -> Answers:
    """What the server committed: its SQLite `answer` table for the candidate."""
    rows = read_db(
        server.data_dir / "examsync.sqlite3",
        "SELECT quiz_code, value, version FROM answer WHERE candidate_id = ? AND exam_code = ?",
        CANDIDATE,
        EXAM_CODE,
    )
    return {code: (value, version) for code, value, version in rows}


# --- the device side -----------------------------------------------------------------------------


def device_db(store_dir: Path) -> Path:
    return store_dir / PLAN_ID / CANDIDATE / f"{EXAM_CODE}.sqlite3"


def device_rows(store_dir: Path, table: str) -> Answers:
    """The client's own SQLite file, read behind its back: `answers` or `outbox`."""
    rows = read_db(device_db(store_dir), f"SELECT quiz_code, value, version FROM {table}")
    return {code: (value, version) for code, value, version in rows}


def local_answers(client: ExamClient) -> Answers:
    return {code: (a.value, a.version) for code, a in client.answers.items()}


def recorder(client: ExamClient) -> list[ClientEvent]:
    seen: list[ClientEvent] = []
    client.add_listener(seen.append)
    return seen


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not in {timeout} s: {what}"
        await asyncio.sleep(0.02)


def value_for(code: str, n: int) -> str:
    return str(n) if code == "Q003" else f"답안 {n}"  # Q003 takes at most 4 characters


class Editor:
    """Keeps editing ``codes`` round-robin, as a candidate typing, until stopped. Every
    ``set_answer`` must be on the device's disk when it returns, outage or not.

    Tests narrow ``codes`` once the trouble is over, so that the final values of the other
    questions are edits made during the trouble: losing one of those cannot hide behind a
    later edit of the same question."""

    def __init__(self, client: ExamClient, store_dir: Path, every: float = 0.03) -> None:
        self.client, self.store_dir, self.every = client, store_dir, every
        self.codes: tuple[str, ...] = CODES
        self.edits = 0
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            code = self.codes[self.edits % len(self.codes)]
            value = value_for(code, self.edits)
            version = self.client.set_answer(code, value)
            assert device_rows(self.store_dir, "answers")[code] == (value, version)
            self.edits += 1
            await asyncio.sleep(self.every)

    async def run_for(self, seconds: float) -> None:
        """Let it edit for ``seconds`` (and fail here if it failed)."""
        done, _ = await asyncio.wait({self._task}, timeout=seconds)
        if done:
            self._task.result()
            raise AssertionError("the editor stopped by itself")

    async def stop(self) -> int:
        self._stop.set()
        await asyncio.wait_for(self._task, 5)
        return self.edits


def check_receipts(client: ExamClient, keys: Mapping[str, bytes]) -> None:
    """Every answer's receipt names exactly that answer and verifies with a published key."""
    for code, answer in client.answers.items():
        receipt = client.receipts[code]
        p = receipt.payload
        assert (p.plan_id, p.candidate_id, p.exam_code, p.quiz_code) == (
            PLAN_ID,
            CANDIDATE,
            EXAM_CODE,
            code,
        )
        assert (p.version, p.value_sha256) == (answer.version, value_sha256(answer.value))
        public = Ed25519PublicKey.from_public_bytes(keys[receipt.key_id])
        assert receipt.proof is not None  # signed a batch at a time
        public.verify(receipt.signature, receipt.signed_bytes())  # raises if forged


async def published_keys(server: ServerProcess) -> Mapping[str, bytes]:
    async with httpx.AsyncClient() as http:
        response = await http.get(server.base + "/api/v1/keys", timeout=5)
    assert response.status_code == 200
    return parse_public_keys(response.content)


async def login(client: ExamClient) -> None:
    session = await client.login(candidate_id=CANDIDATE, auth_code=AUTH_CODE)
    assert session.candidate_id == CANDIDATE
    await until(lambda: client.connection_state is ConnectionState.OPEN, "the socket opens")


# --- 1. the plain path ---------------------------------------------------------------------------


async def test_answers_sync_with_verified_receipts_and_land_in_sqlite(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    server = await asyncio.to_thread(serve_exam, tmp_path / "data", redis_url, servers)
    async with ExamClient(client_config(server.base, tmp_path / "device")) as client:
        seen = recorder(client)
        await login(client)
        client.record_navigation("Q001", "Q002")
        client.record_behavior(focus_ms=1500, keystrokes=12)
        answers = {
            "Q001": "2",
            "Q002": "1",
            "Q003": "24",
            "Q004": "주말에는 보통 친구를 만납니다. 가끔 영화를 봅니다.",
            "Q005": "제 고향은 부산입니다. 바다가 아름답습니다.",
        }
        for code, value in answers.items():
            assert client.set_answer(code, value) == 1
        assert client.set_answer("Q001", "3") == 2
        assert await client.flush(timeout=10)
        assert await client.wait_synced(timeout=1)
        assert client.sync_state.status is SyncStatus.SYNCED

        mine = local_answers(client)
        assert mine == {**{c: (v, 1) for c, v in answers.items()}, "Q001": ("3", 2)}
        assert stored_answers(server) == mine
        check_receipts(client, await published_keys(server))
        acknowledged = {(e.quiz_code, e.version) for e in seen if isinstance(e, AnswerAcknowledged)}
        assert {(c, v) for c, (_, v) in mine.items()} <= acknowledged
        assert not [e for e in seen if isinstance(e, Alert | AnswerOverridden)]

    # The sheet carried the behaviour totals and the navigation step.
    db = server.data_dir / "examsync.sqlite3"
    sheet = read_db(
        db,
        "SELECT focus_time, edit_count, keystrokes FROM answer_sheet WHERE candidate_id = ?",
        CANDIDATE,
    )
    assert sheet == [(1500, 6, 12)]
    steps = read_db(db, "SELECT from_quiz, to_quiz FROM answer_navigation")
    assert steps == [("Q001", "Q002")]


# --- 2. a network cut ----------------------------------------------------------------------------


async def test_a_network_cut_mid_stream_loses_nothing(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    """HTTP and the socket both go through proxies; the proxies reset every connection and
    refuse new ones for ~1.5 s while the candidate keeps typing; then the network heals."""
    http_port, socket_port = free_port(), free_port()
    store = tmp_path / "device"
    with TcpProxy(http_port) as http_proxy, TcpProxy(socket_port) as socket_proxy:
        socket_url = f"ws://127.0.0.1:{socket_proxy.port}/ws"
        server = await asyncio.to_thread(
            serve_exam,
            tmp_path / "data",
            redis_url,
            servers,
            port=http_port,
            socket_port=socket_port,
            env={"EXAMSYNC_PUBLIC_SOCKET_URL": socket_url},
        )
        async with ExamClient(client_config(http_proxy.url, store)) as client:
            seen = recorder(client)
            await login(client)
            assert client.session is not None and client.session.socket_url == socket_url
            assert http_proxy.accepted >= 1 and socket_proxy.accepted == 1

            editor = Editor(client, store)
            await editor.run_for(0.5)  # syncing as it goes
            await asyncio.to_thread(http_proxy.cut)
            await asyncio.to_thread(socket_proxy.cut)
            await editor.run_for(1.5)  # offline: every edit still durable on the device
            state = client.sync_state
            assert state.status is not SyncStatus.SYNCED and state.pending > 0
            behind = stored_answers(server)
            assert behind != local_answers(client)  # the cut was real
            assert any(isinstance(e, ConnectionChanged) and e.fallback for e in seen)
            assert any(
                isinstance(e, DeliveryFailure) and isinstance(e.error, TransportError) for e in seen
            )

            editor.codes = ("Q001",)  # Q002..Q005 keep what was typed during the cut
            await asyncio.to_thread(http_proxy.heal)
            await asyncio.to_thread(socket_proxy.heal)
            await editor.run_for(0.5)  # the stream goes on as the network comes back
            edits = await editor.stop()
            assert await client.wait_synced(timeout=15), client.sync_state
            await until(lambda: client.connection_state is ConnectionState.OPEN, "reconnect")

            mine = local_answers(client)
            assert sum(version for _, version in mine.values()) == edits  # every edit a version
            assert stored_answers(server) == mine
            # Q002..Q005 hold edits made during the cut, which the server had not seen then.
            assert all(mine[code] != behind.get(code) for code in CODES[1:])
            check_receipts(client, await published_keys(server))
            assert device_rows(store, "outbox") == {}


# --- 3. a server restart -------------------------------------------------------------------------


async def test_a_server_restart_mid_stream_loses_nothing(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    """SIGTERM the server while the candidate types; start a new process on the same data dir,
    Redis and ports; the client, which kept editing throughout, catches up by itself."""
    data, store = tmp_path / "data", tmp_path / "device"
    first = await asyncio.to_thread(serve_exam, data, redis_url, servers)
    port, socket_port = int(first.base.rsplit(":", 1)[1]), first.socket_port
    async with ExamClient(client_config(first.base, store)) as client:
        await login(client)
        editor = Editor(client, store)
        await editor.run_for(0.5)

        stopping = asyncio.create_task(asyncio.to_thread(first.stop))
        await editor.run_for(0.3)
        assert await asyncio.wait_for(stopping, 25) == 0, first.output()[-3000:]
        await editor.run_for(0.5)  # nothing is listening now
        assert client.connection_state is not ConnectionState.OPEN
        behind = stored_answers(first)
        assert behind != local_answers(client)

        editor.codes = ("Q001",)  # Q002..Q005 keep what was typed while the server was down
        second = await asyncio.to_thread(
            start_server, data, redis_url, port=port, socket_port=socket_port
        )
        servers.append(second)
        await editor.run_for(0.5)
        edits = await editor.stop()
        assert await client.wait_synced(timeout=15), client.sync_state
        await until(lambda: client.connection_state is ConnectionState.OPEN, "reconnect")

        mine = local_answers(client)
        assert sum(version for _, version in mine.values()) == edits
        assert stored_answers(second) == mine
        assert all(mine[code] != behind.get(code) for code in CODES[1:])  # typed while down
        check_receipts(client, await published_keys(second))


# --- 4. the SDK process killed -------------------------------------------------------------------


class Child:
    """tests/integration/sdk_process.py as a child process, talking JSON lines."""

    def __init__(self, base_url: str, store_dir: Path, mode: str) -> None:
        script = Path(__file__).with_name("sdk_process.py")
        self.process = subprocess.Popen(
            [sys.executable, str(script), base_url, str(store_dir), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._stderr: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._drain, args=(self.process.stdout, self._lines.put)),
            threading.Thread(target=self._drain, args=(self.process.stderr, self._stderr.append)),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _drain(stream: Any, put: Callable[[str], None]) -> None:
        for line in stream:
            put(line)

    def expect(self, step: str, timeout: float = 20) -> dict[str, Any]:
        try:
            message: dict[str, Any] = json.loads(self._lines.get(timeout=timeout))
        except queue.Empty:
            raise AssertionError(f"no {step!r} in {timeout} s:\n{self.finish(1)}") from None
        assert message["step"] == step, (message, self.finish(1))
        return message

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def finish(self, timeout: float = 20) -> str:
        """Wait for the exit (kill it past ``timeout``), close the pipes; return its stderr."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for reader in self._readers:
            reader.join(5)
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
        return "".join(self._stderr)


def test_an_sdk_process_killed_mid_stream_resends_on_restart(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    """A client process saves FIRST, then the network stalls (paused proxies: its save hangs,
    over the socket or HTTP), it sets REST (durable) and dies by SIGKILL with a save in flight.
    A new process on the same store sends what was never acknowledged."""
    http_port, socket_port = free_port(), free_port()
    store = tmp_path / "device"
    with TcpProxy(http_port) as proxy, TcpProxy(socket_port) as socket_proxy:
        server = serve_exam(
            tmp_path / "data",
            redis_url,
            servers,
            port=http_port,
            socket_port=socket_port,
            env={"EXAMSYNC_PUBLIC_SOCKET_URL": f"ws://127.0.0.1:{socket_proxy.port}/ws"},
        )
        crashing = Child(proxy.url, store, "crash")
        acked = crashing.expect("synced")["answers"]
        assert acked == {code: [value, 1] for code, value in FIRST.items()}

        proxy.pause()
        socket_proxy.pause()
        crashing.send("go")
        dying = crashing.expect("dying")
        err = crashing.finish()
        assert crashing.process.returncode == -signal.SIGKILL, err
        final = {**FIRST, **REST}
        expected: Answers = {code: (value, 1) for code, value in final.items()}
        expected["Q001"] = (REST["Q001"], 2)
        assert {c: tuple(a) for c, a in dying["answers"].items()} == expected
        assert dying["pending"] == len(REST)

        # What the dead process left: every answer on its disk, REST still in its outbox,
        # and nothing of REST on the server (the held bytes die with the cut below).
        assert device_rows(store, "answers") == expected
        assert device_rows(store, "outbox") == {c: expected[c] for c in REST}
        for stalled in (proxy, socket_proxy):
            stalled.cut()
            stalled.heal()
        assert stored_answers(server) == {c: (v, 1) for c, v in FIRST.items()}

        resumed = Child(proxy.url, store, "resume")
        done = resumed.expect("synced")
        err = resumed.finish()
        assert resumed.process.returncode == 0, err

    assert {c: tuple(a) for c, a in done["answers"].items()} == expected
    assert done["kept_local"] == sorted(REST)  # the restore at login kept the unsent edits
    assert done["receipts"] == {code: version for code, (_, version) in expected.items()}
    assert stored_answers(server) == expected
    assert device_rows(store, "outbox") == {}


# --- 5. a new device -----------------------------------------------------------------------------


async def test_a_new_device_restores_everything_and_edits_above_the_server(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    server = await asyncio.to_thread(serve_exam, tmp_path / "data", redis_url, servers)
    async with ExamClient(client_config(server.base, tmp_path / "old")) as old:
        await login(old)
        for n in range(3):
            for code in CODES[: 5 - n]:  # Q001 gets 3 versions, Q002 3, Q003 3, Q004 2, Q005 1
                old.set_answer(code, value_for(code, n))
        assert await old.flush(timeout=10)
        before = local_answers(old)
    assert stored_answers(server) == before
    assert [before[c][1] for c in CODES] == [3, 3, 3, 2, 1]

    async with ExamClient(client_config(server.base, tmp_path / "new")) as new:
        seen = recorder(new)
        await login(new)  # login restores
        assert local_answers(new) == before
        reports = [e for e in seen if isinstance(e, RestoreReport)]
        assert len(reports) == 1 and set(reports[0].restored) == set(CODES)
        assert not (reports[0].kept_local or reports[0].resent or reports[0].missing)
        again = await new.restore()  # on demand: the same answers, nothing to send
        assert not (again.kept_local or again.resent or again.missing or again.unconfirmed)
        assert local_answers(new) == before and new.sync_state.pending == 0

        assert new.set_answer("Q001", "새 기기") == 4
        assert new.set_answer("Q005", "새 기기에서 쓴 글") == 2
        assert await new.flush(timeout=10)
        acks = {
            (e.quiz_code, e.version): e.status for e in seen if isinstance(e, AnswerAcknowledged)
        }
        assert acks == {("Q001", 4): AckStatus.ACCEPTED, ("Q005", 2): AckStatus.ACCEPTED}
        assert not [e for e in seen if isinstance(e, AnswerOverridden)]
        after = local_answers(new)
        assert stored_answers(server) == after
        assert after == {**before, "Q001": ("새 기기", 4), "Q005": ("새 기기에서 쓴 글", 2)}


# --- 6. the end of the exam ----------------------------------------------------------------------


async def test_exam_end_reaches_the_client_as_an_event(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    server = await asyncio.to_thread(serve_exam, tmp_path / "data", redis_url, servers)
    async with ExamClient(client_config(server.base, tmp_path / "device")) as client:
        seen = recorder(client)
        await login(client)
        client.set_answer("Q001", "1")
        # A save's round trip: by then the server has long registered this socket for
        # broadcasts (it does so before it sends the welcome, right after the handshake).
        assert await client.flush(timeout=10)

        ended = await asyncio.to_thread(server.admin, "POST", f"/api/v1/admin/plans/{PLAN_ID}/end")
        assert ended.status_code == 200, ended.text
        await until(lambda: client.exam_ended is not None, "exam_end arrives", timeout=10)
        events = [e for e in seen if isinstance(e, ExamEnded)]
        assert events == [client.exam_ended]
        assert events[0].plan_id == PLAN_ID
        assert events[0].message == "시험이 종료되었습니다."


# --- captures and logs through the outbox ----------------------------------------------------


async def test_captures_and_logs_are_kept_through_a_cut_and_uploaded_once(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    """A webcam capture and log entries made while the network is down are stored on the
    device, survive the client being closed and reopened, and are uploaded once it heals."""
    from examsync import UploadOutcome

    http_port = free_port()
    store = tmp_path / "device"
    jpeg = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 20
    with TcpProxy(http_port) as proxy:
        server = await asyncio.to_thread(
            serve_exam, tmp_path / "data", redis_url, servers, port=http_port
        )
        async with ExamClient(client_config(proxy.url, store)) as client:
            await login(client)
            await asyncio.to_thread(proxy.cut)
            capture_id = await client.uploads.capture("webcam", jpeg, "image/jpeg")
            client.uploads.log("focus_lost", "warning", {"seconds": 3})
            client.uploads.log("focus_back")
            await asyncio.sleep(0.5)
            assert client.uploads.pending == 1  # on the device; the log entries still buffered
        # closed while offline: the capture and the flushed log batch are on disk
        assert len(device_rows_raw(store, "SELECT upload_id FROM uploads")) == 2
        await asyncio.to_thread(proxy.heal)
        async with ExamClient(client_config(proxy.url, store)) as client:
            seen = recorder(client)
            await login(client)
            await until(lambda: client.uploads.pending == 0, "uploads drained", timeout=20)
            outcomes = [e for e in seen if isinstance(e, UploadOutcome)]
            assert sorted(o.kind for o in outcomes) == ["capture", "logs"]
            assert all(o.status == "stored" for o in outcomes)
    captures = read_db(
        server.data_dir / "examsync.sqlite3", "SELECT capture_id, kind, size FROM capture"
    )
    assert [tuple(r) for r in captures] == [(capture_id, "webcam", len(jpeg))]
    batches = read_db(server.data_dir / "examsync.sqlite3", "SELECT entries FROM log_batch")
    assert [r[0] for r in batches] == [2]
    assert device_rows_raw(store, "SELECT upload_id FROM uploads") == []


def device_rows_raw(store_dir: Path, sql: str) -> list[Any]:
    with closing(sqlite3.connect(device_db(store_dir))) as db:
        return db.execute(sql).fetchall()


async def short_sessions(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> ServerProcess:
    """The exam on a server whose sessions last 2 s."""
    return await asyncio.to_thread(
        serve_exam,
        tmp_path / "data",
        redis_url,
        servers,
        env={"EXAMSYNC_SESSION_TTL_SECONDS": "2"},
    )


# How a session ends under a client: its 12 hours pass (2 s here), or the admin revokes it
# (401 token_expired / session_revoked). Either way the client signs in again by itself.
SESSION_ENDS = ("expired", "revoked")


async def exam_whose_session_ends(
    how: str, tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> ServerProcess:
    if how == "expired":
        return await short_sessions(tmp_path, redis_url, servers)
    return await asyncio.to_thread(serve_exam, tmp_path / "data", redis_url, servers)


async def end_session(how: str, server: ServerProcess) -> None:
    if how == "expired":
        await asyncio.sleep(3.5)  # past the session's life
        return
    path = f"/api/v1/admin/plans/{PLAN_ID}/sessions/revoke"
    revoked = await asyncio.to_thread(server.admin, "POST", path, json={"candidates": [CANDIDATE]})
    assert revoked.status_code == 200, revoked.text


@pytest.mark.parametrize("how", SESSION_ENDS)
async def test_an_ended_session_is_renewed_without_losing_a_save(
    how: str, tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    """The client logs in again by itself when the server says the token expired or was
    revoked, and the save that met it is acknowledged all the same (never shown saved
    before)."""
    server = await exam_whose_session_ends(how, tmp_path, redis_url, servers)
    config = client_config(server.base, tmp_path / "device")
    # Saves over HTTP: a socket authenticated at its handshake outlives the session's expiry.
    http_saves = replace(config, connection=replace(config.connection, socket_saves=False))
    async with ExamClient(http_saves) as client:
        seen = recorder(client)
        await login(client)
        client.set_answer("Q001", "1")
        assert await client.flush(timeout=10)
        first_token = client.session.token if client.session else ""
        await end_session(how, server)
        client.set_answer("Q001", "2")
        assert await client.flush(timeout=10), client.sync_state
        assert not any(isinstance(e, DeliveryFailure) for e in seen)
        assert stored_answers(server)["Q001"] == ("2", 2)
        assert client._http.token != first_token  # noqa: SLF001 - the renewed session


@pytest.mark.parametrize("how", SESSION_ENDS)
async def test_a_socket_reopened_after_the_session_ended_logs_in_again(
    how: str, tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    """The server refuses the token of the auth frame (401 token_expired or session_revoked):
    the client renews the session and the socket opens, rather than alerting and falling back
    to HTTP. A revoked session's socket is closed by the server (4401); an expired one's is cut
    here."""
    server = await exam_whose_session_ends(how, tmp_path, redis_url, servers)
    async with ExamClient(client_config(server.base, tmp_path / "device")) as client:
        seen = recorder(client)
        await login(client)
        await until(lambda: client.connection_state is ConnectionState.OPEN, "the socket opens")
        first_token = client._http.token  # noqa: SLF001 - the session's token
        await end_session(how, server)
        if how == "expired":
            client._link.drop(TransportError("cut by the test"))  # noqa: SLF001
        await until(lambda: client.connection_state is not ConnectionState.OPEN, "the close")
        await until(lambda: client.connection_state is ConnectionState.OPEN, "reopens")
        assert client._http.token != first_token  # noqa: SLF001 - renewed for the handshake
        assert not [e for e in seen if isinstance(e, Alert)]
        client.set_answer("Q001", "after")
        assert await client.flush(timeout=10)
        assert stored_answers(server)["Q001"] == ("after", 1)
