"""The Pyodide ExamClient against the real reference server (run.sh starts it on CPython).

fetch, WebSocket (ws under Node), IndexedDB (fake-indexeddb) and WebCrypto are all real
implementations here; the server is `examsync serve` with its private Redis and SQLite. The
tests share that server and its one candidate, so each restores first and edits above what
is there; the exam-end test comes last in this file, as it ends the exam for all.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import examsync
from examsync import (
    Backoff,
    ConnectionConfig,
    ConnectionState,
    ExamEnded,
    MemoryStorage,
    SaveChannel,
    StorageFullError,
    StorageState,
    StoreLockedError,
)
from examsync.pyodide import ClientConfig, ExamClient, IndexedDBStorage
from examsync.pyodide._js import js_object, pyfetch

FAST = ConnectionConfig(
    ping_interval=1.0,
    ping_timeout=2.0,
    max_attempts=3,
    backoff=Backoff(base=0.05, cap=0.25, min_delay=0.02),
)


@pytest.fixture
def e2e(host: Any) -> dict[str, str]:
    if not host.e2eJson:
        pytest.fail("run.sh passes the reference server in EXAMSYNC_E2E; it is missing")
    info: dict[str, str] = json.loads(host.e2eJson)
    return info


def config(e2e: dict[str, str], prefix: str | None = None, **options: Any) -> ClientConfig:
    return ClientConfig(
        e2e["baseUrl"],
        e2e["planId"],
        e2e["examCode"],
        database_prefix=prefix or f"device-{uuid.uuid4().hex}",
        connection=FAST,
        request_timeout=5.0,
        open_timeout=2.0,
        storage_timeout=1.0,
        **options,
    )


async def logged_in(client: ExamClient, e2e: dict[str, str]) -> ExamClient:
    await client.login(candidate_id=e2e["candidateId"], auth_code=e2e["authCode"])
    return client


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_answers_sync_with_webcrypto_verified_receipts_and_stay_in_indexeddb(
    e2e: dict[str, str],
) -> None:
    prefix = f"device-{uuid.uuid4().hex}"
    client = await logged_in(ExamClient(config(e2e, prefix)), e2e)
    assert client.storage_state == StorageState("indexeddb", durable=True)
    await until(lambda: client.connection_state is ConnectionState.OPEN)
    # The reference server takes saves over its socket ("save" in its welcome, which may come a
    # moment after the socket opens): acks and their receipts come back as frames (the HTTP
    # path: test_saves_go_over_fetch_when_no_socket_opens).
    await until(lambda: client.save_channel is SaveChannel.SOCKET)
    v1 = await client.set_answer("Q001", "정답 ①")
    v2 = await client.set_answer("Q002", "주말에는 책을 읽습니다.")
    assert await client.wait_synced(10)
    assert client.receipts["Q001"].payload.version == v1
    assert client.receipts["Q002"].payload.version == v2
    answers, receipts = dict(client.answers), dict(client.receipts)
    await client.close()

    # The same device again, offline-style (no restore): everything comes from IndexedDB.
    again = await logged_in(ExamClient(config(e2e, prefix, restore_on_start=False)), e2e)
    assert dict(again.answers) == answers and dict(again.receipts) == receipts
    assert not again.sync_state.pending
    await again.close()


class NoSocketClient(ExamClient):
    """A client whose sockets never open (a proxy that blocks WebSockets)."""

    async def _connect_socket(self, url: str, token: str, last_position: str | None) -> Any:
        raise examsync.TransportError("test: WebSockets are blocked here")


async def test_saves_go_over_fetch_when_no_socket_opens(e2e: dict[str, str]) -> None:
    client = NoSocketClient(config(e2e))
    events: list[Any] = []
    client.add_listener(events.append)
    await logged_in(client, e2e)
    await until(lambda: client.save_channel is SaveChannel.HTTP)  # after max_attempts (3)
    current = client.answers.get("Q003")
    value = "25" if current is not None and current.value == "24" else "24"  # a short answer
    version = await client.set_answer("Q003", value)
    assert await client.wait_synced(10), "\n".join(map(repr, events))
    assert client.receipts["Q003"].payload.version == version
    await client.close()


async def test_a_new_device_restores_from_the_server(e2e: dict[str, str]) -> None:
    first = await logged_in(ExamClient(config(e2e)), e2e)
    await first.set_answer("Q004", f"from the first device {uuid.uuid4().hex[:6]}")
    assert await first.wait_synced(10)
    expected = first.answers["Q004"]
    await first.close()
    second = await logged_in(ExamClient(config(e2e)), e2e)  # another database: a new device
    assert second.answers["Q004"] == expected
    assert await second.set_answer("Q004", "edited on the second") == expected.version + 1
    assert await second.wait_synced(10)
    await second.close()


async def test_without_indexeddb_answers_are_kept_in_memory_and_the_client_says_so(
    e2e: dict[str, str], host: Any
) -> None:
    client = ExamClient(config(e2e), indexeddb=host.brokenFactory("throw"))
    events: list[Any] = []
    client.add_listener(events.append)
    await logged_in(client, e2e)
    state = client.storage_state
    assert state is not None and state.backend == "memory" and not state.durable
    assert "SecurityError" in str(state.error)
    assert state in events  # published, not only readable
    assert isinstance(client._storage, MemoryStorage)
    await client.set_answer("Q005", "kept in memory")
    assert await client.wait_synced(10)  # still reaches the server
    await client.close()


async def test_a_full_quota_fails_set_answer_visibly_and_the_answer_still_syncs(
    e2e: dict[str, str], host: Any
) -> None:
    client = ExamClient(config(e2e))
    events: list[Any] = []
    client.add_listener(events.append)
    await logged_in(client, e2e)
    host.setQuotaExceeded(True)
    with pytest.raises(StorageFullError):
        await client.set_answer("Q005", "no room on this device")
    assert client.storage_state is not None and not client.storage_state.durable
    assert isinstance(client.storage_state.error, StorageFullError)
    assert any(isinstance(e, StorageState) and not e.durable for e in events)
    assert await client.wait_synced(10)  # the server has it all the same
    host.setQuotaExceeded(False)
    await client.set_answer("Q005", "room again")
    assert client.storage_state == StorageState("indexeddb", durable=True)
    assert await client.wait_synced(10)
    assert isinstance(client._storage, IndexedDBStorage)
    await client.close()


async def test_the_package_is_verified_and_cached_in_indexeddb(e2e: dict[str, str]) -> None:
    prefix = f"device-{uuid.uuid4().hex}"
    client = await logged_in(ExamClient(config(e2e, prefix)), e2e)
    first = await client.download_package()
    assert not first.from_cache and first.data[:2] == b"PK"
    again = await client.download_package()
    assert again.from_cache and again.data == first.data and again.sha256 == first.sha256
    await client.close()


async def test_one_writer_per_candidate_another_tab_waits_then_takes_over(
    e2e: dict[str, str],
) -> None:
    prefix = f"device-{uuid.uuid4().hex}"
    writer = await logged_in(ExamClient(config(e2e, prefix)), e2e)
    version = await writer.set_answer("Q001", f"written by the first tab {uuid.uuid4().hex[:4]}")
    with pytest.raises(StoreLockedError):
        await logged_in(ExamClient(config(e2e, prefix, lock_timeout=0.2)), e2e)
    waiting = asyncio.ensure_future(logged_in(ExamClient(config(e2e, prefix)), e2e))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await writer.close()  # the first tab goes away
    second = await asyncio.wait_for(waiting, 5)
    assert second.answers["Q001"].version >= version
    await second.close()


async def test_create_client_picks_the_pyodide_adapter(e2e: dict[str, str]) -> None:
    assert examsync.adapter_name() == "pyodide"
    client = examsync.create_client(
        e2e["baseUrl"], e2e["planId"], e2e["examCode"], database_prefix="via-factory"
    )
    assert type(client) is ExamClient
    await client.close()


async def test_zz_exam_end_reaches_the_socket(e2e: dict[str, str]) -> None:
    """Last: it ends the exam on the shared server."""
    client = await logged_in(ExamClient(config(e2e)), e2e)
    await until(lambda: client.connection_state is ConnectionState.OPEN)
    response = await pyfetch(
        f"{e2e['baseUrl']}/api/v1/admin/plans/{e2e['planId']}/end",
        method="POST",
        headers=js_object(Authorization=f"Bearer {e2e['adminToken']}"),
    )
    assert response.status == 200
    await until(lambda: client.exam_ended is not None)
    assert isinstance(client.exam_ended, ExamEnded)
    await client.close()
