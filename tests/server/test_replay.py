"""Missed-event replay: every socket_queue event carries its `position`; a socket that comes
back with `lastPosition` gets what was for it meanwhile — no gap, no repeat — or, when that
cannot be done, `reload_state`. And the one audience rule fan-out and replay share."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from quart.typing import TestClientProtocol as Client

from examsync_server.access.tokens import Principal
from examsync_server.demo.sample import PLAN_ID
from examsync_server.runtime import Runtime
from examsync_server.sockets.audience import Audience
from examsync_server.sockets.registry import Registry
from socket_peer import Peer, peer

from .conftest import eventually, load_plan, login, socket_url

SUPERVISOR_01 = {"planId": PLAN_ID, "supervisorId": "SUP202301", "authCode": "SUPAUTH01"}
GROUP01_CANDIDATE = {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"}
GROUP02_CANDIDATE = {"planId": PLAN_ID, "candidateId": "CAND202302", "authCode": "AUTH1235"}


# The candidates' sign-ins each queued a `device_active` before the sockets' events.
SIGN_INS = 2


async def tokens(client: Client, admin: dict[str, str]) -> tuple[str, str, str]:
    await load_plan(client, admin)
    return (
        (await login(client, SUPERVISOR_01))["token"],
        (await login(client, GROUP01_CANDIDATE))["token"],
        (await login(client, GROUP02_CANDIDATE))["token"],
    )


def last_entry(sync_redis: Any) -> str:
    [(entry_id, _)] = sync_redis.xrevrange("socket_queue", count=1)
    return str(entry_id)


def note(sync_redis: Any, n: int) -> str:
    """A whole-plan event on socket_queue, as the stage timers write them."""
    return str(
        sync_redis.xadd(
            "socket_queue",
            {
                "type": "note",
                "planId": PLAN_ID,
                "candidateId": "",
                "groupId": "",
                "data": json.dumps({"type": "note", "n": n}),
            },
        )
    )


def positions(p: Peer, *kinds: str) -> list[str]:
    return [f["position"] for f in p.frames if f["type"] in kinds]


async def test_events_carry_their_position_and_a_resume_sends_exactly_what_was_missed(
    client: Client, admin: dict[str, str], runtime: Runtime, sync_redis: Any
) -> None:
    sup, cand1, cand2 = await tokens(client, admin)
    url = socket_url(runtime)
    async with peer(url, sup) as first:
        async with peer(url, cand1):
            event = await first.next_of("examinee_connected")
        assert event["position"] == last_entry(sync_redis)  # the socket_queue entry's id
        start = first.welcome["position"]
        seen = event["position"]
    # Missed: the drop after `seen`, then, away, two events for this supervisor's group and
    # two for another group's.
    async with peer(url, cand1), peer(url, cand2):
        await eventually(lambda: sync_redis.xlen("socket_queue") >= SIGN_INS + 4)
    await eventually(lambda: sync_redis.xlen("socket_queue") == SIGN_INS + 6)
    async with peer(url, sup, last_position=seen) as back:
        resumed = await back.next_of("resumed")
        missed = [f for f in back.frames if f["type"].startswith("examinee_")]
        assert [(f["type"], f["examineeId"]) for f in missed] == [
            ("examinee_disconnected", "CAND202301"),
            ("examinee_connected", "CAND202301"),
            ("examinee_disconnected", "CAND202301"),
        ]
        assert resumed == {"type": "resumed", "position": last_entry(sync_redis), "replayed": 3}
        assert "position" not in back.welcome
        # then live, without a repeat
        async with peer(url, cand1):
            live = await back.next_of("examinee_connected", after=1)
        assert live["position"] == last_entry(sync_redis) > resumed["position"]
    entries = [
        i
        for i, f in sync_redis.xrange("socket_queue")
        if f["groupId"] == "GROUP01" and f["type"].startswith("examinee_")
    ]
    assert positions(back, "examinee_connected", "examinee_disconnected") == entries[1:5]
    assert start is not None and start < entries[0]


async def test_a_resume_under_a_stream_of_events_has_no_gap_and_no_repeat(
    client: Client, admin: dict[str, str], runtime: Runtime, sync_redis: Any
) -> None:
    sup, _, _ = await tokens(client, admin)
    url = socket_url(runtime)
    stop = asyncio.Event()

    async def publish() -> None:
        n = 0
        while not stop.is_set():
            await asyncio.to_thread(note, sync_redis, n)
            n += 1
            await asyncio.sleep(0.002)

    publisher = asyncio.create_task(publish())
    got: list[str] = []
    for _ in range(5):  # away and back, again and again, while events keep coming
        since = got[-1] if got else None
        async with peer(url, sup, last_position=since) as p:
            await asyncio.sleep(0.1)
            assert not p.of("reload_state")
            got += positions(p, "note")
    stop.set()
    await publisher
    everything = [i for i, _ in sync_redis.xrange("socket_queue")]
    assert len(got) > 50
    assert got == everything[everything.index(got[0]) : everything.index(got[-1]) + 1]


async def test_a_position_that_cannot_be_replayed_gets_reload_state(
    client: Client, admin: dict[str, str], runtime: Runtime, sync_redis: Any
) -> None:
    sup, _, _ = await tokens(client, admin)
    url = socket_url(runtime)
    old = note(sync_redis, 1)
    for n in range(2, 6):
        note(sync_redis, n)
    sync_redis.xtrim("socket_queue", maxlen=2, approximate=False)
    current = last_entry(sync_redis)
    await eventually(
        lambda: (
            runtime.sockets is not None
            and (runtime.sockets.registry.delivered.get("socket_queue") == current)
        )
    )
    cases = [
        (old, "position_too_old", None),  # trimmed away since
        ("99999999999999-0", "position_unknown", None),  # Redis lost what the client saw
        ("yesterday", "position_unknown", "invalid_position"),
    ]
    for last, reason, error in cases:
        async with peer(url, sup, last_position=last) as p:
            answer = await p.next_of("reload_state")
            assert answer == {"type": "reload_state", "reason": reason, "position": current}
            assert not p.of("note")
            if error:
                assert p.of("error")[0]["error"]["code"] == error
            # still a working socket, on live delivery
            new = note(sync_redis, 99)
            assert (await p.next_of("note"))["position"] == new
            current = new
            await p.ws.send(json.dumps({"type": "ping", "ts": 1}))
            await p.next_of("pong")


# --- the rule fan-out and replay share ---------------------------------------------------------

principals = st.builds(
    Principal,
    role=st.sampled_from(["candidate", "supervisor"]),
    plan_id=st.sampled_from(["P1", "P2"]),
    subject_id=st.sampled_from(["C1", "C2", "S1"]),
    group_id=st.sampled_from([None, "G1", "G2"]),
)
audiences = st.builds(
    Audience,
    plan_id=st.sampled_from(["P1", "P2"]),
    candidate_id=st.sampled_from([None, "C1", "C2"]),
    group_id=st.sampled_from([None, "G1", "G2"]),
    supervisors_only=st.booleans(),
)


@given(st.lists(principals, max_size=12), audiences)
def test_the_registry_and_a_replay_agree_on_who_an_event_is_for(
    people: list[Principal], audience: Audience
) -> None:
    registry = Registry()
    sockets: list[Any] = [object() for _ in people]
    for conn, who in zip(sockets, people, strict=True):
        registry.add(conn, who)
    chosen = {id(c) for c in registry.targets(audience)}
    assert chosen == {
        id(c) for c, who in zip(sockets, people, strict=True) if audience.includes(who)
    }
