"""One candidate on two devices against a real server: the latest edit wins.

Both devices save at once, so the plan's `device_policy` is `merge` here (under `single` a
sign-in takes over: test_device_policy.py).

Two CPython ``ExamClient``s of the same candidate, each with its own store (its own SQLite
file, its own device id), against one real `examsync serve` process with real Redis and SQLite.
Where a device must be cut off, it gets a network of its own (:class:`DeviceNetwork`). The
measure is the server's SQLite (the `answer` view and `answer_history`) and what each device
shows: the candidate's last edit is kept, and a device whose edit lost says so plainly and is
never `synced` while holding it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest

from examsync import (
    AckStatus,
    AnswerAcknowledged,
    AnswerOverridden,
    ConnectionState,
    SyncState,
    SyncStatus,
)
from examsync.cpython import ClientEvent, ExamClient
from examsync.protocol import parse_timestamp

from .conftest import ServerProcess
from .proxy import TcpProxy
from .sdk_process import CANDIDATE, EXAM_CODE, client_config
from .test_sdk_client import local_answers, login, read_db, serve_exam, until

# Long enough apart that the edits' order is beyond the clocks' correction error (half a round
# trip on loopback; docs/protocol.md "Limits"): "later" in these tests means this much later.
APART = 0.2
LONG_TEXT = "주말에는 보통 친구를 만나서 이야기를 나눕니다. " * 60  # ~1,600 characters of Q005


# --- the server's SQLite -------------------------------------------------------------------------


class Kept(NamedTuple):
    value: str
    version: int
    edited_at: int  # ms, server clock
    device: str


def kept_answers(server: ServerProcess) -> dict[str, Kept]:
    """The server's `answer` view for the candidate: the edit it keeps of each answer."""
    rows = read_db(
        server.data_dir / "examsync.sqlite3",
        "SELECT quiz_code, value, version, edited_at, device FROM answer"
        " WHERE candidate_id = ? AND exam_code = ?",
        CANDIDATE,
        EXAM_CODE,
    )
    return {code: Kept(*rest) for code, *rest in rows}


def history(server: ServerProcess, result: str) -> set[tuple[str, str, str]]:
    """(question, value, device) of every edit the server judged ``result`` (`answer_history`)."""
    rows = read_db(
        server.data_dir / "examsync.sqlite3",
        "SELECT quiz_code, value, device FROM answer_history"
        " WHERE candidate_id = ? AND exam_code = ? AND result = ?",
        CANDIDATE,
        EXAM_CODE,
        result,
    )
    return {(code, value, device) for code, value, device in rows}


def values(answers: dict[str, Kept]) -> dict[str, str]:
    return {code: k.value for code, k in answers.items()}


# --- the devices ---------------------------------------------------------------------------------


class DeviceNetwork:
    """One device's own network to the server, which the test can cut and heal.

    The device talks to the server through proxies on a loopback address of its own: HTTP on
    any port, the socket on the server's socket port. A session's socket URL names the
    request's host on the server's socket port, so a device signed in through this network
    opens its socket through it too, and a cut leaves the other device's network alone."""

    def __init__(self, server: ServerProcess, host: str) -> None:
        http_port = int(server.base.rsplit(":", 1)[1])
        self.http = TcpProxy(http_port, host=host)
        self.socket = TcpProxy(server.socket_port, port=server.socket_port, host=host)

    @property
    def url(self) -> str:
        return self.http.url

    async def cut(self) -> None:
        await asyncio.to_thread(self.http.cut)
        await asyncio.to_thread(self.socket.cut)

    async def heal(self) -> None:
        await asyncio.to_thread(self.http.heal)
        await asyncio.to_thread(self.socket.heal)


@contextmanager
def device_network(server: ServerProcess, host: str = "127.0.0.2") -> Iterator[DeviceNetwork]:
    network = DeviceNetwork(server, host)
    with network.http, network.socket:
        yield network


@asynccontextmanager
async def signed_in(
    base_url: str, store: Path, clock: Callable[[], float] = time.time
) -> AsyncIterator[ExamClient]:
    """A device signed in as the candidate (the sign-in restores), closed afterwards."""
    async with ExamClient(client_config(base_url, store), clock=clock) as client:
        await login(client)
        yield client


class SyncedWatch:
    """Every moment a device says `synced`: what it holds then.

    On each SyncState event of status SYNCED, the device's live state is read as well (a test
    step may have run between the engine's change and the event's delivery); where it still
    says synced, its answers are recorded, to be checked against what the server kept."""

    def __init__(self, client: ExamClient) -> None:
        self.client = client
        self.events: list[ClientEvent] = []
        self.held: list[dict[str, str]] = []  # the answers at each synced moment
        client.add_listener(self._seen)

    def _seen(self, event: ClientEvent) -> None:
        self.events.append(event)
        if isinstance(event, SyncState) and event.status is SyncStatus.SYNCED:
            if self.client.sync_state.status is SyncStatus.SYNCED:
                self.held.append({c: a.value for c, a in self.client.answers.items()})

    def overridden(self) -> list[AnswerOverridden]:
        return [e for e in self.events if isinstance(e, AnswerOverridden)]

    def check_truthful(self, server: ServerProcess) -> None:
        """Whenever the device said synced, each answer it held was an edit the server kept
        (accepted; an edit judged `duplicate` has a kept edit's value)."""
        accepted = {(code, value) for code, value, _ in history(server, "accepted")}
        assert self.held, "the device never said synced"
        for held in self.held:
            lies = {c: v for c, v in held.items() if (c, v) not in accepted}
            assert not lies, f"synced while holding values the server never kept: {lies}"


async def synced(client: ExamClient) -> None:
    assert await client.flush(timeout=10), client.sync_state
    assert client.sync_state.status is SyncStatus.SYNCED


def stamp_ms(client: ExamClient, code: str) -> int:
    """The edit time of the answer the device holds (on the server's clock)."""
    return round(parse_timestamp(client.answers[code].updated) * 1000)


# --- 1. the issue's sequence ---------------------------------------------------------------------


# The issue's sequence, on a `choice` and a `text` question: A's first answer, B's change, and
# A's last change (test_device_policy.py runs it under `single`).
ISSUE_SEQUENCE = pytest.mark.parametrize(
    ("code", "first", "on_b", "last"),
    [
        ("Q001", "1", "2", "3"),
        ("Q005", LONG_TEXT, LONG_TEXT + "B에서 고침.", "A에서 마지막으로 " + LONG_TEXT),
    ],
    ids=["choice", "text"],
)


@ISSUE_SEQUENCE
async def test_the_last_edit_wins_on_a_device_with_an_old_floor(
    tmp_path: Path,
    redis_url: str,
    servers: list[ServerProcess],
    code: str,
    first: str,
    on_b: str,
    last: str,
) -> None:
    """A answers and syncs; B signs in (restores), changes the answer and syncs; A, whose
    version floor is still A's first version, changes it once more: the server keeps A's
    edit, A says synced holding it, and B shows it after a restore and at its next sign-in."""
    server = await asyncio.to_thread(
        serve_exam, tmp_path / "data", redis_url, servers, device_policy="merge"
    )
    async with signed_in(server.base, tmp_path / "a") as a:
        watch_a = SyncedWatch(a)
        assert a.set_answer(code, first) == 1
        await synced(a)

        async with signed_in(server.base, tmp_path / "b") as b:
            watch_b = SyncedWatch(b)
            assert b.device_id != a.device_id
            assert local_answers(b) == {code: (first, 1)}  # the sign-in restored A's answer
            assert b.set_answer(code, on_b) == 2
            await synced(b)
            assert kept_answers(server)[code][:2] == (on_b, 2)

            await asyncio.sleep(APART)  # A's edit comes later, by more than the clocks' error
            assert a.set_answer(code, last) == 2  # proposed above A's floor, 1: B's is 2
            await synced(a)
            kept = kept_answers(server)[code]
            assert (kept.value, kept.version, kept.device) == (last, 3, a.device_id)
            assert abs(kept.edited_at - stamp_ms(a, code)) < 1000  # capped at its arrival
            assert local_answers(a) == {code: (last, 3)}  # the version the server assigned
            assert a.sync_state.overridden == ()
            acks = [e for e in watch_a.events if isinstance(e, AnswerAcknowledged)]
            assert [(e.quiz_code, e.version, e.status) for e in acks][-1] == (
                code,
                3,
                AckStatus.ACCEPTED,
            )
            assert a.receipts[code].payload.version == 3

            report = await b.restore()
            assert report.restored == (code,) and not report.overridden
            assert local_answers(b) == {code: (last, 3)}
            assert b.sync_state.status is SyncStatus.SYNCED and b.sync_state.overridden == ()
            again = await a.restore()  # A already holds what the server keeps
            assert not (again.restored or again.overridden or again.kept_local or again.resent)
            assert local_answers(a) == {code: (last, 3)}

        async with signed_in(server.base, tmp_path / "b") as b:  # B's next sign-in
            assert local_answers(b) == {code: (last, 3)}
            assert b.sync_state.overridden == ()

    # B's edit was kept, then replaced by a later one: nobody's edit was lost.
    assert not watch_a.overridden() and not watch_b.overridden()
    assert history(server, "superseded") == set()
    watch_a.check_truthful(server)
    watch_b.check_truthful(server)


# --- 2. the reverse order of arrival -------------------------------------------------------------


async def test_an_earlier_edit_arriving_late_loses_and_the_device_says_so(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    """A edits Q002 while cut off; B edits Q002 later and syncs; A's network heals and A
    syncs: the server keeps B's edit, and A shows B's value and the conflict, never synced
    while holding its own lost value, until the page dismisses the conflict."""
    server = await asyncio.to_thread(
        serve_exam, tmp_path / "data", redis_url, servers, device_policy="merge"
    )
    with device_network(server) as network:
        async with signed_in(network.url, tmp_path / "a") as a:
            assert a.session is not None and "127.0.0.2" in a.session.socket_url
            watch = SyncedWatch(a)
            a.set_answer("Q001", "1")
            a.set_answer("Q002", "1")
            await synced(a)
            async with signed_in(server.base, tmp_path / "b") as b:
                assert local_answers(b) == local_answers(a)

                await network.cut()
                a.set_answer("Q002", "2")  # t1: A's edit, which will lose
                await until(lambda: a.sync_state.status is SyncStatus.OFFLINE, "A offline")
                await asyncio.sleep(APART)
                b.set_answer("Q002", "3")  # t2 > t1
                await synced(b)
                state = a.sync_state
                assert state.status is not SyncStatus.SYNCED and state.pending == 1

                await network.heal()
                await synced(a)
                await until(lambda: a.connection_state is ConnectionState.OPEN, "A reconnects")

                kept = kept_answers(server)
                assert values(kept) == {"Q001": "1", "Q002": "3"}
                assert kept["Q002"].device == b.device_id
                # A's edit reached the server, and lost there.
                assert ("Q002", "2", a.device_id) in history(server, "superseded")

                assert local_answers(a) == {"Q001": ("1", 1), "Q002": ("3", kept["Q002"].version)}
                lost = watch.overridden()
                assert [(e.quiz_code, e.lost_value, e.value) for e in lost] == [("Q002", "2", "3")]
                assert lost[0].version == kept["Q002"].version
                assert stamp_ms(a, "Q002") == kept["Q002"].edited_at
                state = a.sync_state
                assert state.overridden == ("Q002",)
                assert state.status is SyncStatus.SYNCED  # holding the server's value now
                watch.check_truthful(server)
                assert all(held.get("Q002") != "2" for held in watch.held)

                assert a.dismiss_conflict("Q002") is True
                assert a.sync_state.overridden == ()
                assert a.dismiss_conflict("Q002") is False
                assert local_answers(a)["Q002"][0] == "3"
                assert local_answers(b)["Q002"][0] == "3"
                assert b.sync_state.overridden == ()

        # The dismissal is in A's store: the next sign-in shows no conflict.
        async with signed_in(network.url, tmp_path / "a") as a:
            assert a.sync_state.overridden == ()
            assert local_answers(a)["Q002"][0] == "3"


# --- 3. a device offline for a long while --------------------------------------------------------


async def test_a_device_back_from_a_long_cut_loses_only_its_stale_edits(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    """A is cut off for a few seconds, editing all along; B edits some of the same questions
    meanwhile. When A comes back, each of its edits is judged by when it was made: those older
    than B's lose (and A reports them), the rest are kept, wherever the order of arrival."""
    server = await asyncio.to_thread(
        serve_exam, tmp_path / "data", redis_url, servers, device_policy="merge"
    )
    with device_network(server) as network:
        async with signed_in(network.url, tmp_path / "a") as a:
            watch = SyncedWatch(a)
            for code in ("Q001", "Q002", "Q003", "Q004", "Q005"):
                a.set_answer(code, "1" if code < "Q004" else "처음 답")
            await synced(a)
            async with signed_in(server.base, tmp_path / "b") as b:
                await network.cut()
                # Early in the cut, A edits Q001, Q002 (which B edits later) and Q003, Q004
                # (which B never touches).
                a.set_answer("Q001", "2")
                a.set_answer("Q002", "2")
                a.set_answer("Q003", "22")
                a.set_answer("Q004", "A가 끊긴 동안 쓴 글")
                await asyncio.sleep(APART)
                b.set_answer("Q001", "3")
                b.set_answer("Q002", "3")
                b.set_answer("Q005", "B가 쓴 글")
                await synced(b)
                # Still cut off: A edits Q005, after B did.
                await asyncio.sleep(APART)
                a.set_answer("Q005", "A가 B 뒤에 쓴 글")
                await asyncio.sleep(2.5)  # the rest of the long cut: A retries and falls back
                state = a.sync_state
                assert state.status is not SyncStatus.SYNCED and state.pending == 5
                assert values(kept_answers(server)) == {
                    "Q001": "3",
                    "Q002": "3",
                    "Q003": "1",
                    "Q004": "처음 답",
                    "Q005": "B가 쓴 글",
                }

                await network.heal()
                await synced(a)
                final = {
                    "Q001": "3",  # B's, later than A's
                    "Q002": "3",
                    "Q003": "22",  # A's: B never touched them
                    "Q004": "A가 끊긴 동안 쓴 글",
                    "Q005": "A가 B 뒤에 쓴 글",  # A's: made after B's, though it came later
                }
                kept = kept_answers(server)
                assert values(kept) == final
                assert {c for c, k in kept.items() if k.device == a.device_id} == {
                    "Q003",
                    "Q004",
                    "Q005",
                }
                assert {c: v for c, (v, _) in local_answers(a).items()} == final
                lost = {e.quiz_code: (e.lost_value, e.value) for e in watch.overridden()}
                assert lost == {"Q001": ("2", "3"), "Q002": ("2", "3")}
                assert a.sync_state.overridden == ("Q001", "Q002")
                superseded = history(server, "superseded")
                assert superseded == {("Q001", "2", a.device_id), ("Q002", "2", a.device_id)}
                watch.check_truthful(server)

                await b.restore()
                assert {c: v for c, (v, _) in local_answers(b).items()} == final
                assert b.sync_state.overridden == ()


# --- 4. a device whose clock is wrong ------------------------------------------------------------


@pytest.mark.parametrize("skew", [30.0, -30.0], ids=["ahead", "behind"])
async def test_a_device_clock_off_by_30_s_orders_its_edits_by_real_time(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess], skew: float
) -> None:
    """A's clock is 30 s off the machine's; the sign-in's server time corrects its stamps. An
    edit A makes after B's wins; one A made before B's, arriving after it, loses. (Ahead, an
    uncorrected A would win the second; behind, it would lose the first.)"""

    def wrong_clock() -> float:
        return time.time() + skew

    server = await asyncio.to_thread(
        serve_exam, tmp_path / "data", redis_url, servers, device_policy="merge"
    )
    with device_network(server) as network:
        async with signed_in(network.url, tmp_path / "a", wrong_clock) as a:
            watch = SyncedWatch(a)
            async with signed_in(server.base, tmp_path / "b") as b:
                # After B: A's edit wins.
                b.set_answer("Q001", "1")
                await synced(b)
                await asyncio.sleep(APART)
                before = time.time()
                a.set_answer("Q001", "2")
                after = time.time()
                # Stamped on the server's clock (the machine's), not A's.
                assert before * 1000 - 1000 <= stamp_ms(a, "Q001") <= after * 1000 + 1000
                await synced(a)
                kept = kept_answers(server)["Q001"]
                assert (kept.value, kept.device) == ("2", a.device_id)
                assert local_answers(a)["Q001"] == ("2", kept.version)

                # Before B, arriving after: A's edit loses.
                await network.cut()
                a.set_answer("Q002", "1")
                await asyncio.sleep(APART)
                b.set_answer("Q002", "2")
                await synced(b)
                await network.heal()
                await synced(a)
                kept = kept_answers(server)["Q002"]
                assert (kept.value, kept.device) == ("2", b.device_id)
                assert ("Q002", "1", a.device_id) in history(server, "superseded")
                assert local_answers(a)["Q002"] == ("2", kept.version)
                lost = [(e.quiz_code, e.lost_value, e.value) for e in watch.overridden()]
                assert lost == [("Q002", "1", "2")]
                assert a.sync_state.overridden == ("Q002",)
                watch.check_truthful(server)
                await b.restore()
                assert {c: v for c, (v, _) in local_answers(b).items()} == {
                    "Q001": "2",
                    "Q002": "2",
                }
