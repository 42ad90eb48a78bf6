"""One candidate on two devices under the plan's `device_policy` (issue 14, step 2).

Real `examsync serve`, Redis and SQLite; two CPython ``ExamClient``s, each with its own store
and device id. Under `single` (the default) a sign-in takes the exam over: the other device
is told (a `device_active` frame, :class:`~examsync.DeviceChanged`), says `replaced`, and the
server refuses its later edits (`409 device_replaced`) while still taking those made before
the takeover; `take_over()` brings the exam back, restoring first. Under `merge` both devices
save and the latest edit wins (the step-1 tests in test_devices.py run under `merge`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from examsync import DeviceChanged, SyncStatus
from examsync.cpython import ExamClient

from .conftest import ServerProcess
from .test_devices import (
    APART,
    ISSUE_SEQUENCE,
    SyncedWatch,
    device_network,
    history,
    kept_answers,
    signed_in,
    synced,
    values,
)
from .test_sdk_client import local_answers, serve_exam, until


def changes(watch: SyncedWatch) -> list[DeviceChanged]:
    return [e for e in watch.events if isinstance(e, DeviceChanged)]


async def replaced(client: ExamClient) -> None:
    await until(lambda: client.sync_state.status is SyncStatus.REPLACED, "the device is replaced")


@ISSUE_SEQUENCE
async def test_single_a_sign_in_takes_over_and_the_candidates_last_edit_is_kept(
    tmp_path: Path,
    redis_url: str,
    servers: list[ServerProcess],
    code: str,
    first: str,
    on_b: str,
    last: str,
) -> None:
    """The issue's sequence under `single`: A answers; B signs in (A is told at once), changes
    the answer; A, back, changes it once more — refused there, never `synced`, until A
    continues on A: the restore brings B's edit, then A's later edit goes out and is kept."""
    server = await asyncio.to_thread(serve_exam, tmp_path / "data", redis_url, servers)
    async with signed_in(server.base, tmp_path / "a") as a:
        watch_a = SyncedWatch(a)
        a.set_answer(code, first)
        await synced(a)

        async with signed_in(server.base, tmp_path / "b") as b:
            watch_b = SyncedWatch(b)
            await replaced(a)
            told = changes(watch_a)[-1]
            assert (told.device_id, told.this_device, told.replaced) == (b.device_id, False, True)
            assert told.policy == "single"
            assert local_answers(b) == {code: (first, 1)}
            b.set_answer(code, on_b)
            await synced(b)

            await asyncio.sleep(APART)
            a.set_answer(code, last)  # after the takeover: kept on A, not taken by the server
            await asyncio.sleep(1.0)
            state = a.sync_state
            assert state.status is SyncStatus.REPLACED and state.pending == 1
            assert values(kept_answers(server)) == {code: on_b}
            assert (code, last, a.device_id) not in history(server, "accepted")

            await a.take_over()
            await synced(a)
            kept = kept_answers(server)[code]
            assert (kept.value, kept.device) == (last, a.device_id)
            assert local_answers(a)[code][0] == last
            assert a.sync_state.overridden == ()
            await replaced(b)  # now B is told
            told = changes(watch_b)[-1]
            assert (told.device_id, told.replaced) == (a.device_id, True)

            b.set_answer(code, "B가 밀려난 뒤에 쓴 답")
            await asyncio.sleep(1.0)
            assert b.sync_state.status is SyncStatus.REPLACED and b.sync_state.pending == 1
            assert kept_answers(server)[code].value == last

    watch_a.check_truthful(server)
    watch_b.check_truthful(server)


async def test_single_a_takeover_during_a_cut_keeps_the_edits_made_before_it(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    """A is cut off and edits; B signs in meanwhile (a takeover A cannot hear of) and edits;
    A edits once more, after the takeover. When A's network heals: its edits made before the
    takeover are judged by the latest-edit rule (Q001 loses to B's later edit, Q003 is kept),
    the one made after is refused and waits on A, which says `replaced`; continuing on A
    sends it."""
    server = await asyncio.to_thread(serve_exam, tmp_path / "data", redis_url, servers)
    with device_network(server) as network:
        async with signed_in(network.url, tmp_path / "a") as a:
            watch = SyncedWatch(a)
            a.set_answer("Q001", "1")
            await synced(a)

            await network.cut()
            a.set_answer("Q001", "2")  # before the takeover; B's later edit beats it
            a.set_answer("Q003", "33")  # before the takeover; nobody else edits it
            await until(lambda: a.sync_state.status is SyncStatus.OFFLINE, "A offline")
            await asyncio.sleep(APART)
            async with signed_in(server.base, tmp_path / "b") as b:
                assert local_answers(b) == {"Q001": ("1", 1)}
                b.set_answer("Q001", "3")
                await synced(b)
                await asyncio.sleep(APART)
                a.set_answer("Q004", "인계 뒤에 A에서 쓴 글")  # after the takeover

                await network.heal()
                await replaced(a)
                await until(lambda: "Q003" in kept_answers(server), "A's early edits are taken")
                await until(lambda: a.sync_state.pending == 1, "only the late edit waits")
                kept = kept_answers(server)
                assert values(kept) == {"Q001": "3", "Q003": "33"}
                assert kept["Q003"].device == a.device_id
                assert ("Q001", "2", a.device_id) in history(server, "superseded")
                assert a.sync_state.overridden == ("Q001",)
                assert all(e.quiz_code != "Q004" for e in watch.events if hasattr(e, "quiz_code"))

                await a.take_over()
                await synced(a)
                assert values(kept_answers(server)) == {
                    "Q001": "3",
                    "Q003": "33",
                    "Q004": "인계 뒤에 A에서 쓴 글",
                }
                await replaced(b)
    watch.check_truthful(server)


async def test_merge_both_devices_save_and_each_is_told_of_the_other(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    """Under `merge` a second sign-in replaces nobody: A hears of B, both keep saving, and the
    latest edit of each answer is kept."""
    server = await asyncio.to_thread(
        serve_exam, tmp_path / "data", redis_url, servers, device_policy="merge"
    )
    async with signed_in(server.base, tmp_path / "a") as a:
        watch = SyncedWatch(a)
        a.set_answer("Q001", "1")
        await synced(a)
        async with signed_in(server.base, tmp_path / "b") as b:
            await until(lambda: bool(changes(watch)), "A hears of B")
            told = changes(watch)[-1]
            assert (told.device_id, told.replaced, told.policy) == (b.device_id, False, "merge")
            b.set_answer("Q001", "2")
            b.set_answer("Q002", "2")
            await synced(b)
            await asyncio.sleep(APART)
            a.set_answer("Q002", "4")
            await synced(a)
            assert a.sync_state.status is SyncStatus.SYNCED
            assert values(kept_answers(server)) == {"Q001": "2", "Q002": "4"}
    watch.check_truthful(server)
