"""ExamClient among the candidate's devices (docs/sdk.md, "Several devices: takeover"): the
device id at every sign-in, DeviceChanged and the REPLACED status, and take_over()."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from cpython_fakes import KEY, PLAN, FakeApi, FakeSocketServer, error
from cpython_fakes import socket_server as start_socket_server
from test_cpython_client import client_for, recorder, until

from examsync import AnswerAcknowledged, DeliveryFailure, DeviceChanged, ServerError, SyncStatus
from examsync.cpython._local import safe_name

OTHER = "dev-other"


def other_device_signs_in(api: FakeApi) -> None:
    api.logins.clear()
    api.login({"planId": PLAN, "key": KEY, "deviceId": OTHER})


async def test_every_sign_in_sends_the_device_id_and_a_renewal_does_not_activate(
    api: FakeApi, tmp_path: Path
) -> None:
    async with client_for(api, tmp_path) as exam:
        await exam.login(key=KEY)  # a key login: the candidate is not known before it
        kept = (tmp_path / safe_name(PLAN) / "device-id").read_text()
        assert api.logins == [{"planId": PLAN, "key": KEY, "deviceId": exam.device_id}]
        assert kept == exam.device_id and exam.session is not None
        assert exam.session.device_id == exam.device_id
        assert exam.session.active_device is not None
        assert exam.session.active_device.device_id == exam.device_id
        api.expire_next = True  # the session expired: the next save renews it
        exam.set_answer("Q1", "a")
        assert await exam.flush(3)
        assert api.logins[-1] == {
            "planId": PLAN,
            "key": KEY,
            "deviceId": exam.device_id,
            "activate": False,
        }


@pytest.mark.parametrize(
    "refusal",
    [
        error(429, "too_many_attempts"),
        error(503, "unavailable"),
        httpx.ConnectError("connection reset"),
    ],
)
async def test_a_renewal_that_fails_once_keeps_the_token_and_the_edits_sync_after_a_backoff(
    api: FakeApi, tmp_path: Path, refusal: httpx.Response | httpx.TransportError
) -> None:
    """The session was revoked and the renewal it caused refused (a sign-in throttled, the
    server busy, the network gone): the old token is kept, the request fails (a save into
    the outbox's backoff) and the next one renews again (issue 15 review, finding 3). With
    the token dropped, every later request went without one and the edits never synced."""
    async with client_for(api, tmp_path) as exam:
        seen = recorder(exam)
        await exam.login(key=KEY)
        await until(lambda: "restore" in api.log)
        api.revoked = "*"
        api.refuse_logins.append(refusal)
        exam.set_answer("Q1", "a")
        await until(lambda: not api.refuse_logins)  # a request met the revocation, then this
        assert await exam.flush(3)
    assert api.answers == {"Q1": ("a", 1)}
    renewal = {"planId": PLAN, "key": KEY, "deviceId": exam.device_id, "activate": False}
    assert api.logins[1:] == [renewal]  # the refused sign-in, then this one that worked
    # Nothing was shown saved before the renewal that worked let the save through.
    acked = [i for i, e in enumerate(seen) if isinstance(e, AnswerAcknowledged)]
    assert len(acked) == 1 and api.log.index("save") > api.log.index("sign-in", 1)


async def test_a_save_whose_renewal_is_refused_fails_into_the_backoff_with_the_refusal(
    api: FakeApi, tmp_path: Path
) -> None:
    """The save is what meets the revocation, and its renewal is throttled: the send fails at
    once with the 429 (the engine's backoff), not left in flight by an escaped error."""
    async with client_for(api, tmp_path) as exam:
        seen = recorder(exam)
        await exam.login(key=KEY)
        api.revoked = "/api/v1/answers"  # the saves' path only
        api.refuse_logins.append(error(429, "too_many_attempts"))
        exam.set_answer("Q1", "a")
        await until(lambda: any(isinstance(e, DeliveryFailure) for e in seen), timeout=1.5)
        failure = next(e for e in seen if isinstance(e, DeliveryFailure))
        assert isinstance(failure.error, ServerError)
        assert (failure.error.status, failure.error.code) == (429, "too_many_attempts")
        assert api.answers == {} and not any(isinstance(e, AnswerAcknowledged) for e in seen)
        assert await exam.flush(3)
    assert api.answers == {"Q1": ("a", 1)}


async def test_a_store_with_an_id_of_its_own_signs_in_again_with_it(
    api: FakeApi, tmp_path: Path
) -> None:
    async with client_for(api, tmp_path) as first:
        await first.login(key=KEY)
        store_id = first.device_id
    (tmp_path / safe_name(PLAN) / "device-id").write_text("another-id")  # not the store's
    api.logins.clear()
    async with client_for(api, tmp_path) as exam:
        await exam.login(key=KEY)
        assert [b["deviceId"] for b in api.logins] == ["another-id", store_id]
        assert exam.device_id == store_id and api.active is not None
        assert api.active.device_id == store_id
        assert exam.sync_state.status is SyncStatus.SYNCED


async def test_a_device_active_frame_replaces_this_device(
    api: FakeApi, server: FakeSocketServer, tmp_path: Path
) -> None:
    async with client_for(api, tmp_path) as exam:
        await exam.login(key=KEY)
        seen = recorder(exam)
        await until(lambda: server.sockets != [])
        other_device_signs_in(api)
        await server.broadcast(api.device_frames[-1])
        await server.broadcast(api.device_frames[-1])  # twice: one event
        await until(lambda: exam.sync_state.status is SyncStatus.REPLACED)
        await asyncio.sleep(0.05)
        assert api.active is not None
        changes = [e for e in seen if isinstance(e, DeviceChanged)]
        assert changes == [DeviceChanged(OTHER, api.active.since, "single", False, True)]
        saves = api.log.count("save")
        exam.set_answer("Q1", "typed after the takeover")
        await asyncio.sleep(0.2)
        assert api.log.count("save") == saves and api.refused == 0  # held, not sent
        assert exam.sync_state.pending == 1


@pytest.mark.parametrize("features", [("save",), ()], ids=["socket", "http"])
async def test_a_refused_save_replaces_this_device_without_a_retry_loop(
    api: FakeApi, tmp_path: Path, features: tuple[str, ...]
) -> None:
    async with (
        start_socket_server(api, features=features),
        client_for(api, tmp_path) as exam,
    ):
        await exam.login(key=KEY)
        seen = recorder(exam)
        other_device_signs_in(api)  # no frame reaches this device
        await asyncio.sleep(0.01)  # the edit is stamped after the takeover
        exam.set_answer("Q1", "a")
        await until(lambda: exam.sync_state.status is SyncStatus.REPLACED)
        assert api.active is not None
        changes = [e for e in seen if isinstance(e, DeviceChanged)]
        assert changes == [DeviceChanged(OTHER, api.active.since, "single", False, True)]
        await asyncio.sleep(0.3)
        assert api.refused == 1 and "Q1" not in api.answers
        assert exam.sync_state.pending == 1


async def test_take_over_signs_in_restores_then_sends(
    api: FakeApi, server: FakeSocketServer, tmp_path: Path
) -> None:
    async with (
        client_for(api, tmp_path / "laptop") as laptop,
        client_for(api, tmp_path / "tablet") as tablet,
    ):
        await laptop.login(key=KEY)
        await until(lambda: len(server.sockets) == 1)
        await tablet.login(key=KEY)  # takes over
        await server.broadcast(api.device_frames[-1])
        await until(lambda: laptop.sync_state.status is SyncStatus.REPLACED)
        tablet.set_answer("Q1", "from the tablet")
        assert await tablet.flush(3)
        laptop.set_answer("Q2", "held on the laptop")
        await asyncio.sleep(0.1)
        assert "Q2" not in api.answers

        api.log.clear()
        api.restore_delay = 0.2  # time for the loop to send, were it let
        session = await laptop.take_over()
        assert session.active_device is not None
        assert session.active_device.device_id == laptop.device_id
        assert session.replaced_device == tablet.device_id
        assert await laptop.flush(3)
        assert api.log[:3] == ["sign-in", "restore", "save"]  # restore before the first save
        assert laptop.answers["Q1"].value == "from the tablet"  # what changed elsewhere
        assert api.answers["Q2"][0] == "held on the laptop"
        assert laptop.sync_state.status is SyncStatus.SYNCED
        # The tablet now holds, and says so, once the frame reaches it.
        await server.broadcast(api.device_frames[-1])
        await until(lambda: tablet.sync_state.status is SyncStatus.REPLACED)


def cached_sessions(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / safe_name(PLAN) / "sessions").glob("*.json"))


async def an_old_store(api: FakeApi, tmp_path: Path) -> str:
    """A store made before the device-wide id: its id is not the one the device keeps."""
    async with client_for(api, tmp_path) as first:
        await first.login(key=KEY)
        store_id = first.device_id
    (tmp_path / safe_name(PLAN) / "device-id").write_text("another-id")
    api.logins.clear()
    return store_id


async def test_an_old_stores_id_becomes_the_devices_and_the_final_session_is_cached(
    api: FakeApi, tmp_path: Path
) -> None:
    store_id = await an_old_store(api, tmp_path)
    async with client_for(api, tmp_path) as exam:
        await exam.login(key=KEY)
        assert [b["deviceId"] for b in api.logins] == ["another-id", store_id]
    assert (tmp_path / safe_name(PLAN) / "device-id").read_text() == store_id
    [cache] = cached_sessions(tmp_path)
    assert json.loads(cache.read_text())["token"] == f"tok-1.{store_id}"  # the final sign-in's
    api.logins.clear()
    async with client_for(api, tmp_path) as exam:
        await exam.login(key=KEY)
        assert [b["deviceId"] for b in api.logins] == [store_id]  # one sign-in from now on


@pytest.mark.parametrize("features", [("save",), ()], ids=["socket", "http"])
async def test_an_old_store_restarts_offline_then_renews_a_token_of_the_wrong_device(
    api: FakeApi, tmp_path: Path, features: tuple[str, ...]
) -> None:
    store_id = await an_old_store(api, tmp_path)
    api.login({"planId": PLAN, "key": KEY, "deviceId": "another-id"})
    api.login({"planId": PLAN, "key": KEY, "deviceId": store_id})  # the store's id is active
    api.logins.clear()
    async with (
        start_socket_server(api, features=features) as server,
        client_for(api, tmp_path) as exam,
    ):
        # A cache from an SDK that kept the first sign-in's session: its token's device is
        # another than the store's.
        [cache] = cached_sessions(tmp_path)
        wire = json.loads(cache.read_text())
        wrong = {"token": "tok-1.another-id", "deviceId": "another-id", "socketUrl": server.url}
        cache.write_text(json.dumps({**wire, **wrong}))
        api.down, server.accepting = True, False
        await exam.login(key=KEY)  # offline: the cached session, no second sign-in
        assert exam.device_id == store_id and api.logins == []
        assert (tmp_path / safe_name(PLAN) / "device-id").read_text() == store_id
        await asyncio.sleep(0.01)
        exam.set_answer("Q1", "typed offline")
        api.down, server.accepting = False, True
        assert await exam.flush(3)  # refused once (the token's device), renewed, sent
        assert exam.sync_state.status is SyncStatus.SYNCED
        assert api.refused == 1 and api.answers["Q1"][0] == "typed offline"
        renewal = {"planId": PLAN, "key": KEY, "deviceId": store_id, "activate": False}
        assert api.logins == [renewal]
        assert (api.socket_saves > 0) == bool(features)


async def test_a_login_that_fails_after_opening_the_store_can_be_retried(
    api: FakeApi, tmp_path: Path
) -> None:
    store_id = await an_old_store(api, tmp_path)
    answer = api.login
    failed: list[str] = []

    def second_sign_in_fails(body: dict[str, Any]) -> httpx.Response:
        if body.get("deviceId") == store_id and not failed:
            failed.append(store_id)
            return error(503, "unavailable")
        return answer(body)

    api.login = second_sign_in_fails  # type: ignore[method-assign]
    async with client_for(api, tmp_path) as exam:
        with pytest.raises(ServerError):
            await exam.login(key=KEY)
        assert exam.session is None
        session = await exam.login(key=KEY)  # not StoreLockedError: the store was released
        assert session.device_id == store_id and exam.device_id == store_id
