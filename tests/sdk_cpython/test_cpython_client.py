"""ExamClient end to end against the in-test API (httpx.MockTransport) and socket server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cpython_fakes import AUTH_CODE, CANDIDATE, EXAM, KEY, PLAN, FakeApi, FakeSocketServer

from examsync import (
    Alert,
    AnswerOverridden,
    Backoff,
    ConnectionChanged,
    ConnectionConfig,
    ConnectionState,
    DeliveryFailure,
    ExamEnded,
    ProgressReloaded,
    ReceiptError,
    ReloadState,
    RestoreReport,
    Resumed,
    SaveChannel,
    StorageState,
    StoreLockedError,
    SyncState,
    SyncStatus,
)
from examsync.cpython import ClientConfig, ExamClient, SyncExamClient
from examsync.frames import StageChanged, UnknownFrame
from examsync.protocol import parse_timestamp

PING, TIMEOUT, ATTEMPTS = 0.2, 0.2, 3


def config(store: Path, **overrides: Any) -> ClientConfig:
    connection = ConnectionConfig(
        ping_interval=PING,
        ping_timeout=TIMEOUT,
        max_attempts=ATTEMPTS,
        backoff=Backoff(base=0.02, cap=0.05, min_delay=0.01),
    )
    options: dict[str, Any] = {
        "connection": connection,
        "request_timeout": 2.0,
        "lock_timeout": 0.1,
        "open_timeout": 2.0,
        **overrides,
    }
    return ClientConfig("http://exam.test", PLAN, EXAM, store, **options)


def client_for(api: FakeApi, store: Path, **overrides: Any) -> ExamClient:
    http = httpx.AsyncClient(transport=api.transport())
    return ExamClient(config(store, **overrides), http_client=http)


async def until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def client(
    api: FakeApi, server: FakeSocketServer, tmp_path: Path
) -> AsyncIterator[ExamClient]:
    async with client_for(api, tmp_path) as exam:
        yield exam


def recorder(client: ExamClient) -> list[Any]:
    seen: list[Any] = []
    client.add_listener(seen.append)
    return seen


async def test_answers_sync_over_the_socket_with_verified_receipts(
    client: ExamClient, api: FakeApi
) -> None:
    seen = recorder(client)
    session = await client.login(key=KEY)
    assert session.candidate_id == CANDIDATE
    await until(lambda: client.save_channel is SaveChannel.SOCKET)
    assert client.set_answer("Q1", "정답 ①") == 1
    client.set_answer("Q2", "2")
    client.record_navigation("Q1", "Q2")
    client.record_behavior(focus_ms=1500, keystrokes=12)
    assert await client.wait_synced(3)
    assert api.answers == {"Q1": ("정답 ①", 1), "Q2": ("2", 1)}
    assert api.socket_saves >= 1 and api.http_saves == 0
    assert set(client.receipts) == {"Q1", "Q2"} and api.key_fetches == 1
    assert client.sync_state.status is SyncStatus.SYNCED
    states = [e for e in seen if isinstance(e, SyncState)]
    assert states[-1].status is SyncStatus.SYNCED
    assert any(isinstance(e, ConnectionChanged) and e.state is ConnectionState.OPEN for e in seen)


async def test_saves_go_over_http_when_the_server_offers_no_socket_saves(
    client: ExamClient, api: FakeApi, server: FakeSocketServer
) -> None:
    server.features = ()
    await client.login(candidate_id=CANDIDATE, auth_code=AUTH_CODE)
    await until(lambda: client.connection_state is ConnectionState.OPEN)
    client.set_answer("Q1", "a")
    assert await client.wait_synced(3)
    assert api.http_saves >= 1 and api.socket_saves == 0
    assert client.save_channel is SaveChannel.HTTP


async def test_a_dead_connection_is_noticed_within_ping_interval_plus_timeout(
    client: ExamClient, server: FakeSocketServer
) -> None:
    seen = recorder(client)
    await client.login(key=KEY)
    await until(lambda: client.save_channel is SaveChannel.SOCKET)
    server.silent = True  # TCP stays up; nothing answers
    silent_since = time.monotonic()
    await until(lambda: any(getattr(e, "reason", None) == "heartbeat timeout" for e in seen))
    noticed_after = time.monotonic() - silent_since
    assert noticed_after <= PING + TIMEOUT + 0.3  # slack for a loaded machine
    server.silent = False
    await until(lambda: server.connections == 2 and client.save_channel is SaveChannel.SOCKET)


async def test_bounded_reconnects_then_http_fallback_then_back_to_the_socket(
    client: ExamClient, api: FakeApi, server: FakeSocketServer
) -> None:
    server.accepting = False
    at_fallback: list[tuple[int, int]] = []

    def watch(event: object) -> None:
        if isinstance(event, ConnectionChanged) and event.fallback and not at_fallback:
            at_fallback.append((server.refused, api.http_saves))

    client.add_listener(watch)
    await client.login(key=KEY)
    client.set_answer("Q1", "a")
    await until(lambda: bool(at_fallback))
    assert at_fallback == [(ATTEMPTS, 0)]  # saves were held until the attempts ran out
    assert await client.wait_synced(3)
    assert api.http_saves >= 1 and client.save_channel is SaveChannel.HTTP
    await until(lambda: server.refused > ATTEMPTS + 1)  # the socket is retried in background
    server.accepting = True
    await until(lambda: client.save_channel is SaveChannel.SOCKET)
    client.set_answer("Q1", "b")
    assert await client.wait_synced(3)
    assert api.socket_saves >= 1 and api.answers["Q1"] == ("b", 2)


async def test_failed_socket_retries_behind_the_fallback_leave_the_save_backoff_alone(
    api: FakeApi, server: FakeSocketServer, tmp_path: Path
) -> None:
    """In fallback the socket is retried every ~25 ms here; a retry that fails is no
    reconnect, so HTTP saves keep their own backoff (0.5 s, then 1 s with this rng) rather
    than going again at every socket attempt. A socket that opens still retries at once."""
    http = httpx.AsyncClient(transport=api.transport())
    async with ExamClient(config(tmp_path), http_client=http, rng=lambda: 0.5) as client:
        seen = recorder(client)
        server.accepting = False
        await client.login(key=KEY)
        api.down = True
        client.set_answer("Q1", "a")
        await until(lambda: client.save_channel is SaveChannel.HTTP)
        refused = server.refused
        await asyncio.sleep(1.2)
        assert server.refused > refused + 10  # the socket was retried all along
        attempts = [e.attempt for e in seen if isinstance(e, DeliveryFailure)]
        assert attempts in ([1], [1, 2]), attempts
        api.down, server.accepting = False, True
        assert await client.wait_synced(1.0)  # the socket opened: the save went at once
    assert api.answers == {"Q1": ("a", 1)}


async def test_a_tampered_receipt_is_rejected_and_the_answer_stays_queued(
    client: ExamClient, api: FakeApi
) -> None:
    seen = recorder(client)
    api.tamper = True
    await client.login(key=KEY)
    client.set_answer("Q1", "a")
    await until(lambda: any(isinstance(e, Alert) for e in seen))
    alert = next(e for e in seen if isinstance(e, Alert))
    assert isinstance(alert.error, ReceiptError) and alert.error.quiz_code == "Q1"
    assert client.receipts == {} and client.sync_state.pending == 1
    assert not await client.wait_synced(0.2)
    api.tamper = False
    assert await client.flush(3)  # the retry gets a duplicate with a genuine receipt
    assert client.receipts["Q1"].payload.version == 1


async def test_exam_end_stage_changes_and_odd_frames_reach_the_events(
    client: ExamClient, server: FakeSocketServer
) -> None:
    seen = recorder(client)
    await client.login(key=KEY)
    await until(lambda: client.connection_state is ConnectionState.OPEN)
    stream = client.events()
    next_event = asyncio.ensure_future(anext(stream))
    await server.broadcast({"type": "examinee_connected", "examineeId": "E2"})
    for conn in server.sockets:
        await conn.send("{malformed")
    await server.broadcast({"type": "stage_changed", "planId": PLAN, "stageId": "S2"})
    end = {
        "type": "exam_end",
        "message": "시험이 종료되었습니다.",
        "timestamp": "t",
        "planId": PLAN,
    }
    await server.broadcast(end)
    await until(lambda: client.exam_ended is not None)
    assert client.exam_ended == ExamEnded(PLAN, "시험이 종료되었습니다.", "t")
    assert isinstance(await asyncio.wait_for(next_event, 1), UnknownFrame)
    await stream.aclose()
    quiet = SyncState | ConnectionChanged | RestoreReport
    kinds = [type(e).__name__ for e in seen if not isinstance(e, quiet)]
    assert kinds == ["StorageState", "UnknownFrame", "Alert", "StageChanged", "ExamEnded"]
    assert seen[0] == client.storage_state == StorageState("sqlite", durable=True)
    assert client.connection_state is ConnectionState.OPEN  # a bad frame is reported, not fatal


async def test_a_restore_reports_acknowledged_answers_the_server_lost(
    client: ExamClient, api: FakeApi
) -> None:
    await client.login(key=KEY)
    client.set_answer("Q1", "a")
    assert await client.wait_synced(3)
    api.answers.clear()  # the server lost what it signed for
    report = await client.restore()
    assert report.unconfirmed == ("Q1",) and report.resent == ("Q1",)
    assert await client.wait_synced(3)
    assert api.answers == {"Q1": ("a", 2)}


async def test_a_second_client_on_the_same_store_gets_a_typed_error(
    api: FakeApi, server: FakeSocketServer, tmp_path: Path
) -> None:
    async with client_for(api, tmp_path) as first:
        await first.login(key=KEY)
        second = client_for(api, tmp_path)
        with pytest.raises(StoreLockedError):
            await second.login(key=KEY)
        await second.close()
    async with client_for(api, tmp_path) as third:
        await third.login(key=KEY)  # the lock went with the first client


async def test_a_restart_offline_keeps_the_answers_and_resends_them(
    api: FakeApi, server: FakeSocketServer, tmp_path: Path
) -> None:
    async with client_for(api, tmp_path) as first:
        await first.login(candidate_id=CANDIDATE, auth_code=AUTH_CODE)
        api.down, server.accepting = True, False
        first.set_answer("Q1", "typed offline")
        assert first.sync_state.pending == 1
    async with client_for(api, tmp_path) as second:
        await second.login(candidate_id=CANDIDATE, auth_code=AUTH_CODE)  # the cached session
        assert second.answers["Q1"].value == "typed offline"
        api.down, server.accepting = False, True
        assert await second.flush(3)
    assert api.answers == {"Q1": ("typed offline", 1)}


async def test_logging_in_offline_without_a_cached_session_fails(
    api: FakeApi, tmp_path: Path
) -> None:
    api.down = True
    async with client_for(api, tmp_path) as exam:
        with pytest.raises(Exception) as info:
            await exam.login(key=KEY)
    assert type(info.value).__name__ == "TransportError"


async def test_two_devices_the_later_edit_wins_and_the_other_device_says_so(
    tmp_path: Path,
) -> None:
    laptop_api = FakeApi()  # no socket server: saves go over HTTP after the socket attempts
    tablet_api = FakeApi(answers=laptop_api.answers, edits=laptop_api.edits, key=laptop_api.key)
    async with (
        client_for(laptop_api, tmp_path / "laptop") as laptop,
        client_for(tablet_api, tmp_path / "tablet") as tablet,
    ):
        seen = recorder(laptop)
        await laptop.login(key=KEY)
        await tablet.login(key=KEY)
        laptop_api.down = True
        laptop.set_answer("Q1", "typed on the laptop")  # waits: the laptop is cut off
        await asyncio.sleep(0.05)
        tablet.set_answer("Q1", "typed later on the tablet")
        assert await tablet.flush(3)
        laptop_api.down = False
        assert await laptop.flush(3)

        assert (
            laptop.answers["Q1"].value == "typed later on the tablet" == laptop_api.answers["Q1"][0]
        )
        state = laptop.sync_state
        assert (state.status, state.overridden) == (SyncStatus.SYNCED, ("Q1",))
        lost = [e for e in seen if isinstance(e, AnswerOverridden)]
        assert [(e.quiz_code, e.lost_value) for e in lost] == [("Q1", "typed on the laptop")]
        assert laptop.dismiss_conflict("Q1") and laptop.sync_state.overridden == ()

        ids = {laptop.device_id, tablet.device_id}
        assert len(ids) == 2 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
        assert laptop_api.device_ids | tablet_api.device_ids == ids
        first_id = laptop.device_id
    async with client_for(laptop_api, tmp_path / "laptop") as again:
        await again.login(key=KEY)
        assert again.device_id == first_id  # kept in the store


async def test_edits_are_stamped_on_the_servers_clock_from_the_login(tmp_path: Path) -> None:
    api = FakeApi(clock=lambda: time.time() + 3600)  # the server is an hour ahead
    async with client_for(api, tmp_path, restore_on_start=False) as exam:  # (a restore would)
        await exam.login(key=KEY)
        exam.set_answer("Q1", "a")
        stamp = parse_timestamp(exam.answers["Q1"].updated)
        assert abs(stamp - (time.time() + 3600)) < 5
    api.down = True
    async with client_for(api, tmp_path) as again:  # offline: the stored offset stands
        await again.login(key=KEY)
        again.set_answer("Q1", "b")
        assert abs(parse_timestamp(again.answers["Q1"].updated) - (time.time() + 3600)) < 5


async def test_a_socket_welcome_sets_the_clock_too(
    api: FakeApi, server: FakeSocketServer, tmp_path: Path
) -> None:
    ahead = [0.0]
    api.clock = lambda: time.time() + ahead[0]
    async with client_for(api, tmp_path, restore_on_start=False) as exam:
        await exam.login(key=KEY)
        ahead[0] = 600.0  # the server's clock jumps before the socket opens
        await until(lambda: exam.save_channel is SaveChannel.SOCKET)
        # Its welcome bounds the offset from when the socket began opening (not a point, which
        # an ack's bounds could contradict by a millisecond and so replace).
        clock = exam._require_engine()._edit_clock  # noqa: SLF001 - the engine's edit clock
        assert 0 < clock.spread < 5 and abs(clock.offset - 600) < 5
        exam.set_answer("Q1", "a")
        assert abs(parse_timestamp(exam.answers["Q1"].updated) - (time.time() + 600)) < 5


def test_the_sync_wrapper_drives_the_same_client(tmp_path: Path) -> None:
    api = FakeApi(socket_url="ws://127.0.0.1:9/ws")  # nothing listens: HTTP fallback
    http = httpx.AsyncClient(transport=api.transport())
    with SyncExamClient(config(tmp_path), http_client=http) as exam:
        seen: list[Any] = []
        exam.add_listener(seen.append)
        assert exam.login(key=KEY).candidate_id == CANDIDATE
        assert exam.set_answer("Q1", "a") == 1
        assert exam.flush(5)
        assert exam.answers["Q1"].value == "a" and "Q1" in exam.receipts
        assert exam.sync_state.status is SyncStatus.SYNCED
        assert exam.restore().unconfirmed == ()
        assert len(exam.device_id) == 32 and not exam.dismiss_conflict("Q1")
    assert api.http_saves >= 1
    assert any(isinstance(e, ConnectionChanged) and e.fallback for e in seen)
    assert json.loads(json.dumps(api.answers)) == {"Q1": ["a", 1]}


async def test_a_reconnect_resumes_after_the_last_position_and_a_reload_refetches_progress(
    client: ExamClient, api: FakeApi, server: FakeSocketServer
) -> None:
    seen = recorder(client)
    await client.login(key=KEY)
    assert client.progress == {"status": "in_progress", "currentStage": "S1"}  # from the login
    await until(lambda: server.connections == 1 and client.save_channel is SaveChannel.SOCKET)
    assert server.auths[0].last_position is None
    await server.broadcast(
        {"type": "stage_changed", "planId": PLAN, "timestamp": "t", "position": "41-0"}
    )
    await until(lambda: any(isinstance(e, StageChanged) for e in seen))

    # The server asks for a reload on the resume: the client fetches its progress again.
    server.resume_reply = {"type": "reload_state", "reason": "position_too_old", "position": "50-0"}
    api.progress = {"status": "in_progress", "currentStage": "S3"}
    await server.sockets[0].close()
    await until(lambda: any(isinstance(e, ProgressReloaded) for e in seen))
    assert server.auths[1].last_position == "41-0"
    assert [e for e in seen if isinstance(e, ReloadState)] == [
        ReloadState("position_too_old", "50-0")
    ]
    assert [e.progress for e in seen if isinstance(e, ProgressReloaded)] == [api.progress]
    assert client.progress == api.progress and api.me_fetches == 1

    # The next resume goes on from the reload's position, and ends with `resumed`.
    server.resume_reply = {"type": "resumed", "position": "50-0", "replayed": 0}
    await until(lambda: server.connections == 2 and len(server.sockets) == 1)
    await server.sockets[0].close()
    await until(lambda: any(isinstance(e, Resumed) for e in seen))
    assert server.auths[2].last_position == "50-0"
    assert api.me_fetches == 1
    # Nothing but the path in the URL: the token and the position went in the auth frame.
    assert server.paths == ["/ws"] * 3
    assert {a.token.partition(".")[0] for a in server.auths} == {"tok-1"}


async def test_answers_waiting_on_the_device_are_reported_when_the_server_takes_reports(
    client: ExamClient, api: FakeApi, server: FakeSocketServer
) -> None:
    server.features = ("sync_state",)  # saves over HTTP, which is down: answers wait
    await client.login(key=KEY)
    await until(lambda: len(server.reports) == 1)
    assert server.reports[0] == {"type": "sync_state", "pending": 0, "oldestPendingAge": None}
    api.down = True
    client.set_answer("Q1", "a")
    client.set_answer("Q2", "b")
    await until(lambda: len(server.reports) == 2, timeout=3)  # after the 1 s gap, the last count
    assert server.reports[1]["pending"] == 2 and server.reports[1]["oldestPendingAge"] >= 0.5
    api.down = False
    assert await client.flush(3)
    await until(lambda: server.reports[-1]["pending"] == 0, timeout=3)


async def test_no_reports_to_a_server_that_does_not_offer_them(
    client: ExamClient, server: FakeSocketServer
) -> None:
    await client.login(key=KEY)
    client.set_answer("Q1", "a")
    assert await client.wait_synced(3)
    await asyncio.sleep(0.2)
    assert server.reports == []


async def test_in_fallback_the_client_polls_events_over_http(
    api: FakeApi, server: FakeSocketServer, tmp_path: Path
) -> None:
    server.accepting = False  # every socket attempt is refused: fallback
    ended = {"type": "exam_end", "message": "끝", "timestamp": "t", "planId": PLAN}
    api.poll_answer = {
        "events": [{"type": "stage_changed", "planId": PLAN, "timestamp": "t", "position": "4-0"}],
        "position": "5-0",
    }
    connection = ConnectionConfig(
        ping_interval=PING,
        ping_timeout=TIMEOUT,
        max_attempts=ATTEMPTS,
        backoff=Backoff(base=0.02, cap=0.05, min_delay=0.01),
        poll_interval=0.1,
    )
    async with client_for(api, tmp_path, connection=connection) as client:
        seen = recorder(client)
        await client.login(key=KEY)
        await until(lambda: len(api.polls) >= 2)
        assert api.polls[:2] == [None, "5-0"]  # each poll goes on from the last one's position
        assert any(isinstance(e, StageChanged) for e in seen)
        api.poll_answer = {"events": [ended], "position": "5-0"}
        await until(lambda: len(api.polls) >= 5)
        assert [e for e in seen if isinstance(e, ExamEnded)] == [client.exam_ended]  # once
        server.accepting = True
        await until(lambda: client.connection_state is ConnectionState.OPEN)
        polls = len(api.polls)
        await asyncio.sleep(0.3)
        assert len(api.polls) <= polls + 1  # at most one that was out; then the socket carries
        assert server.auths[-1].last_position == "5-0"


async def test_a_refused_handshake_with_retry_after_is_retried_no_sooner(
    client: ExamClient, server: FakeSocketServer
) -> None:
    server.accepting, server.retry_after = False, 1
    await client.login(key=KEY)
    await until(lambda: server.refused == 1)
    await asyncio.sleep(0.8)  # the backoff alone would have retried ~20 times by now
    assert server.refused == 1
    server.accepting = True
    await until(lambda: client.connection_state is ConnectionState.OPEN, timeout=3)
