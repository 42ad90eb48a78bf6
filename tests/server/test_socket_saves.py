"""Saves over the socket: the HTTP save path behind a socket frame. Acked only after the SQLite
commit, refused with the HTTP codes, and never in the way of the socket's other traffic."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from examsync.messages import SaveAck
from examsync_server.demo.sample import PLAN_ID
from examsync_server.runtime import Runtime
from socket_peer import Peer, peer

from .answer_helpers import encoded, save_body
from .conftest import login, socket_url
from .test_answers import started
from .test_save_errors import BAD_SAVES, nothing_stored

SUPERVISOR = {"planId": PLAN_ID, "supervisorId": "SUP202301", "authCode": "SUPAUTH01"}


def save_frame(request_id: Any, body: bytes) -> str:
    """As the SDK splices it (examsync.frames.save_frame): the payload bytes as they are."""
    return '{"type":"save","id":' + json.dumps(request_id) + ',"payload":' + body.decode() + "}"


async def answer_to(p: Peer, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
    """The save_ack or error frame that answers save `request_id`."""
    for _ in range(int(timeout / 0.02)):
        for frame in p.frames:
            if frame["type"] in ("save_ack", "error") and frame.get("id") == request_id:
                return frame
        await asyncio.sleep(0.02)
    raise AssertionError(f"no answer to {request_id}: {p.frames}")


async def candidate_socket(client: Client, admin: dict[str, str]) -> str:
    auth = await started(client, admin)
    return auth["Authorization"].removeprefix("Bearer ")


async def test_a_socket_save_is_acked_after_the_commit_with_the_http_body(
    client: Client, admin: dict[str, str], runtime: Runtime, db: sqlite3.Connection
) -> None:
    token = await candidate_socket(client, admin)
    async with peer(socket_url(runtime), token) as p:
        assert p.welcome["features"] == ["save", "sync_state"]
        body = save_body({"Q001": ("2", 1), "Q004": ("주말에 쉽니다", 1)})
        await p.ws.send(save_frame("r1", encoded(body)))
        ack = await answer_to(p, "r1")
        # committed by the time the ack arrives
        rows = db.execute("SELECT quiz_code, value, version FROM answer ORDER BY 1").fetchall()
        assert [tuple(r) for r in rows] == [("Q001", "2", 1), ("Q004", "주말에 쉽니다", 1)]
        assert ack["type"] == "save_ack" and set(ack) == {"type", "id", "results", "serverTime"}
        parsed = SaveAck.from_wire({k: v for k, v in ack.items() if k not in ("type", "id")})
        assert {q: r.status.value for q, r in parsed.results.items()} == {
            "Q001": "accepted",
            "Q004": "accepted",
        }
        assert all(r.receipt is not None for r in parsed.results.values())
        # the version rules are the HTTP ones: the same save again is a duplicate
        await p.ws.send(save_frame("r2", encoded(body)))
        again = await answer_to(p, "r2")
        assert {r["status"] for r in again["results"].values()} == {"duplicate"}
    assert db.execute("SELECT COUNT(*) FROM answer_history").fetchone()[0] == 2


@pytest.mark.parametrize(
    ("body", "status", "code"), [b[1:] for b in BAD_SAVES], ids=[b[0] for b in BAD_SAVES]
)
async def test_a_bad_socket_save_gets_the_http_error_and_stores_nothing(
    client: Client,
    admin: dict[str, str],
    runtime: Runtime,
    db: sqlite3.Connection,
    sync_redis: Any,
    body: bytes,
    status: int,
    code: str,
) -> None:
    token = await candidate_socket(client, admin)
    async with peer(socket_url(runtime), token) as p:
        await p.ws.send(save_frame("bad", body))
        if body.startswith(b"{not json"):
            # The frame itself is not JSON: no id can be read from it.
            error = await p.next_of("error")
            assert "id" not in error
        else:
            error = await answer_to(p, "bad")
            assert (error["id"], error["status"]) == ("bad", status)
        assert error["error"]["code"] == code, error
        assert set(error["error"]) == {"code", "message", "details"}
        # the socket stays usable
        await p.ws.send(json.dumps({"type": "ping", "ts": 7}))
        assert (await p.next_of("pong"))["ts"] == 7
    assert nothing_stored(db, sync_redis)


async def test_saves_that_cannot_be_taken_are_refused_clearly(
    client: Client, admin: dict[str, str], runtime: Runtime, db: sqlite3.Connection, sync_redis: Any
) -> None:
    token = await candidate_socket(client, admin)
    sup = (await login(client, SUPERVISOR))["token"]
    url = socket_url(runtime)
    good = encoded(save_body({"Q001": ("2", 1)}))
    async with peer(url, token) as p:
        for bad_id in (None, "", 7, "x" * 101):
            await p.ws.send(save_frame(bad_id, good))
        await p.ws.send('{"type":"save","payload":' + good.decode() + "}")
        await asyncio.sleep(0.3)
        errors = p.of("error")
        assert len(errors) == 5 and all("id" not in e for e in errors), errors
        assert {e["error"]["code"] for e in errors} == {"invalid_message"}
        await p.ws.send('{"type":"save","id":"none"}')  # no payload: an empty body
        assert (await answer_to(p, "none"))["error"]["code"] == "invalid_json"
        # JSON, but a number no canonical JSON can write (Python reads it as infinity)
        await p.ws.send('{"type":"save","id":"inf","payload":{"x":1e999}}')
        assert (await answer_to(p, "inf"))["error"]["code"] == "invalid_json"
    async with peer(url, sup) as s:
        assert s.welcome["features"] == []
        await s.ws.send(save_frame("s1", good))
        refused = await answer_to(s, "s1")
        assert (refused["status"], refused["error"]["code"]) == (403, "candidates_only")
    assert nothing_stored(db, sync_redis)


@pytest.mark.parametrize("settings_overrides", [{"ack_timeout_seconds": 1.0}])
async def test_waiting_saves_do_not_hold_up_pings_and_are_bounded_per_socket(
    client: Client, admin: dict[str, str], runtime: Runtime, sync_redis: Any
) -> None:
    token = await candidate_socket(client, admin)
    persister = next(t for t in runtime.tasks if t.get_name() == "persister")
    persister.cancel()  # nothing commits now: every save waits for its ack
    await asyncio.gather(persister, return_exceptions=True)
    async with peer(socket_url(runtime), token) as p:
        for i in range(9):
            await p.ws.send(save_frame(f"w{i}", encoded(save_body({"Q001": ("2", i + 1)}))))
        await p.ws.send(json.dumps({"type": "ping", "ts": 1}))
        await p.next_of("pong", timeout=0.5)  # answered while eight saves wait
        refused = await answer_to(p, "w8", timeout=0.5)
        assert (refused["status"], refused["error"]["code"]) == (429, "too_many_saves")
        assert refused["error"]["details"] == {"retryAfter": 1}
        timed_out = [await answer_to(p, f"w{i}") for i in range(8)]
    assert {(f["status"], f["error"]["code"]) for f in timed_out} == {(503, "ack_timeout")}
    assert sync_redis.xlen(f"exam_queue:{PLAN_ID}:answers") == 8  # queued; a retry is harmless
