"""Revoked sessions (issue 15, defect 4): refused on every request and socket, whoever revoked.

A revocation is made by the admin, by replacing a plan without a person (or with their group
or credentials changed), or by an end that asks for it; it is durable in SQLite, refused in
the process that made it at once, in the others through Redis pub/sub, and after a lost
message within `revocation_reload_seconds`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any
from unittest import mock

import pytest
from quart.typing import TestClientProtocol as Client
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from examsync_server.access.principal import Principal
from examsync_server.access.revocations import RevocationSync, Revoked, encode
from examsync_server.access.tokens import Tokens
from examsync_server.config import Settings
from examsync_server.demo.sample import PLAN_ID
from examsync_server.runtime import Runtime
from examsync_server.store import keys
from examsync_server.store.revocations import EVERYONE, Revocation
from examsync_server.store.sqlite import Database
from socket_peer import peer

from .answer_helpers import encoded, save_body
from .conftest import (
    ADMIN_TOKEN,
    SECRET_KEY,
    error_of,
    eventually,
    load_plan,
    login,
    plan_with,
    socket_url,
)
from .test_answers import save, started
from .test_sessions import SUPERVISOR, WEB, bearer, me
from .test_socket_saves import answer_to, save_frame

CAND = WEB
OTHER = {**WEB, "candidateId": "CAND202302", "authCode": "AUTH1235"}
REVOKE = f"/api/v1/admin/plans/{PLAN_ID}/sessions/revoke"


async def token_of(client: Client, body: dict[str, str]) -> str:
    return str((await login(client, body))["token"])


async def revoke(client: Client, admin: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(REVOKE, json=body, headers=admin)
    found: dict[str, Any] = await response.get_json()
    assert response.status_code == 200, found
    return found


async def test_an_admin_revocation_refuses_every_request_of_the_session_and_nothing_is_stored(
    client: Client, admin: dict[str, str], db: sqlite3.Connection
) -> None:
    auth = await started(client, admin)
    token = auth["Authorization"].removeprefix("Bearer ")
    other = await token_of(client, OTHER)
    answer = await revoke(client, admin, {"candidates": ["CAND202301"]})
    assert answer["revokedSessions"]["candidates"] == ["CAND202301"]
    await error_of(await me(client, token), 401, "session_revoked")
    package = await client.get(f"/api/v1/plans/{PLAN_ID}/package", headers=auth)
    await error_of(package, 401, "session_revoked")
    response = await save(client, auth, save_body({"Q001": ("2", 1)}))
    await error_of(response, 401, "session_revoked")
    assert db.execute("SELECT COUNT(*) FROM answer_history").fetchone()[0] == 0
    # Someone else's session is untouched; signing in again is the way back.
    assert (await me(client, other)).status_code == 200
    again = await token_of(client, CAND)
    assert (await me(client, again)).status_code == 200
    assert (await save(client, bearer(again), save_body({"Q001": ("2", 1)}))).status_code == 200
    row = db.execute("SELECT role, subject_id, reason FROM session_revocation").fetchone()
    assert tuple(row) == ("candidate", "CAND202301", "admin")


async def test_a_revocation_of_all_refuses_candidates_and_supervisors_of_that_plan_only(
    client: Client, admin: dict[str, str]
) -> None:
    await load_plan(client, admin)
    candidate, supervisor = await token_of(client, CAND), await token_of(client, SUPERVISOR)
    await revoke(client, admin, {"all": True})
    await error_of(await me(client, candidate), 401, "session_revoked")
    await error_of(await me(client, supervisor), 401, "session_revoked")
    snapshot = await client.get("/api/v1/supervisor/snapshot", headers=bearer(supervisor))
    await error_of(snapshot, 401, "session_revoked")
    # Issued after it (within the same second: tokens say when to the millisecond), it works.
    assert (await me(client, await token_of(client, SUPERVISOR))).status_code == 200


@pytest.mark.parametrize(
    "body",
    [{}, {"candidates": []}, {"candidates": ["bad id!"]}, {"all": "yes"}, {"everyone": True}],
)
async def test_a_revocation_that_names_nobody_valid_is_refused_and_stores_nothing(
    client: Client, admin: dict[str, str], db: sqlite3.Connection, body: dict[str, Any]
) -> None:
    await load_plan(client, admin)
    await error_of(await client.post(REVOKE, json=body, headers=admin), 422, "invalid_request")
    assert db.execute("SELECT COUNT(*) FROM session_revocation").fetchone()[0] == 0


async def test_revoking_in_an_unknown_plan_is_404(client: Client, admin: dict[str, str]) -> None:
    response = await client.post(
        "/api/v1/admin/plans/NOPLAN/sessions/revoke", json={"all": True}, headers=admin
    )
    await error_of(response, 404, "plan_not_found")


async def test_a_replaced_plan_revokes_who_left_it_or_changed_group_or_credentials(
    client: Client, admin: dict[str, str], db: sqlite3.Connection
) -> None:
    await load_plan(client, admin)
    gone, moved, recoded = (
        await token_of(client, CAND),
        await token_of(client, OTHER),
        await token_of(client, {**CAND, "candidateId": "CAND202303", "authCode": "AUTH1236"}),
    )
    kept = await token_of(client, {**CAND, "candidateId": "CAND202304", "authCode": "AUTH1237"})
    supervisor = await token_of(client, SUPERVISOR)
    plan = plan_with(
        ("candidates.1.group_id", "GROUP01"),  # CAND202302 moves from GROUP02
        ("candidates.2.candidate_auth_code", "NEWCODE1"),  # CAND202303's code leaked
    )
    del plan["candidates"][0]  # CAND202301 leaves the plan
    response = await client.put(f"/api/v1/admin/plans/{PLAN_ID}", json=plan, headers=admin)
    body = await response.get_json()
    assert response.status_code == 200, body
    assert body["revokedSessions"]["candidates"] == ["CAND202301", "CAND202302", "CAND202303"]
    assert body["revokedSessions"]["supervisors"] == []
    for token in (gone, moved, recoded):
        await error_of(await me(client, token), 401, "session_revoked")
    assert (await me(client, kept)).status_code == 200
    assert (await me(client, supervisor)).status_code == 200
    # The removed candidate cannot come back; the others sign in again.
    await client.post(f"/api/v1/admin/plans/{PLAN_ID}/prepare", headers=admin)
    refused = await client.post("/api/v1/sessions", json=CAND)
    await error_of(refused, 401, "invalid_credentials")
    assert (await me(client, await token_of(client, OTHER))).status_code == 200
    reasons = {r[0] for r in db.execute("SELECT reason FROM session_revocation")}
    assert reasons == {"plan_replaced"}


async def test_a_sign_in_that_read_the_old_code_before_a_replacement_committed_is_refused(
    client: Client, admin: dict[str, str], runtime: Runtime
) -> None:
    """The sign-in reads the leaked code, the replacement that rotates it commits, and only
    then is the token issued (issue 15 review, finding 1): the token is refused."""
    await load_plan(client, admin)
    read, replaced = asyncio.Event(), asyncio.Event()
    service = runtime.sessions
    real_read = service.candidates.by_auth_code

    async def read_then_wait(plan_id: str, candidate_id: str) -> Any:
        found = await real_read(plan_id, candidate_id)
        read.set()
        await replaced.wait()
        return found

    with mock.patch.object(service.candidates, "by_auth_code", read_then_wait):
        signing_in = asyncio.ensure_future(client.post("/api/v1/sessions", json=CAND))
        await asyncio.wait_for(read.wait(), 10)
        plan = plan_with(("candidates.0.candidate_auth_code", "NEWCODE1"))
        put = await client.put(f"/api/v1/admin/plans/{PLAN_ID}", json=plan, headers=admin)
        assert (await put.get_json())["revokedSessions"]["candidates"] == ["CAND202301"]
        replaced.set()
        response = await signing_in
    assert response.status_code == 201  # the old code was right when it was read
    token = (await response.get_json())["token"]
    await error_of(await me(client, token), 401, "session_revoked")


async def test_a_sign_in_begun_inside_a_replacement_before_its_commit_is_refused(
    client: Client, admin: dict[str, str], runtime: Runtime
) -> None:
    """The replacement's transaction is open (its revocation time once taken in it); a sign-in
    begins and reads the old code, committed, and gets its token before the commit: the
    revocation, stamped after the commit, refuses it."""
    await load_plan(client, admin)
    writing, signed_in = asyncio.Event(), asyncio.Event()
    plans = runtime.lifecycle.plans
    real_replace = plans.replace

    async def wait_then_replace(*args: Any) -> None:
        writing.set()
        await signed_in.wait()
        await real_replace(*args)

    plan = plan_with(("supervisors.0.supervisor_auth_code", "NEWSUPCODE"))
    with mock.patch.object(plans, "replace", wait_then_replace):
        replacing = asyncio.ensure_future(
            client.put(f"/api/v1/admin/plans/{PLAN_ID}", json=plan, headers=admin)
        )
        await asyncio.wait_for(writing.wait(), 10)
        await asyncio.sleep(0.01)  # past the time a revocation taken inside would have had
        token = await token_of(client, SUPERVISOR)
        signed_in.set()
        put = await replacing
    assert (await put.get_json())["revokedSessions"]["supervisors"] == ["SUP202301"]
    await error_of(await me(client, token), 401, "session_revoked")


async def test_an_end_revokes_the_candidates_only_when_asked(
    client: Client, admin: dict[str, str]
) -> None:
    auth = await started(client, admin)
    candidate = auth["Authorization"].removeprefix("Bearer ")
    supervisor = await token_of(client, SUPERVISOR)
    end = f"/api/v1/admin/plans/{PLAN_ID}/end"
    response = await client.post(end, json={"revokeSessions": True}, headers=admin)
    body = await response.get_json()
    assert response.status_code == 200, body
    assert body["revokedSessions"]["everyCandidate"] is True
    await error_of(await me(client, candidate), 401, "session_revoked")
    assert (await me(client, supervisor)).status_code == 200
    bad = await client.post(end, json={"revokeSessions": "yes"}, headers=admin)
    await error_of(bad, 422, "invalid_request")


async def test_an_end_that_revokes_tells_the_open_sockets_of_the_end_before_closing_them(
    client: Client, admin: dict[str, str], runtime: Runtime
) -> None:
    """Candidates flush edits made before the end (late saves): their SDK must hear exam_end
    before the close, not only after signing in again."""
    auth = await started(client, admin)
    async with peer(socket_url(runtime), auth["Authorization"].removeprefix("Bearer ")) as p:
        end = f"/api/v1/admin/plans/{PLAN_ID}/end"
        response = await client.post(end, json={"revokeSessions": True}, headers=admin)
        assert response.status_code == 200
        await asyncio.wait_for(p.closed.wait(), 2)
        assert p.close_code == 4401
        assert [f["type"] for f in p.frames if f["type"] != "ping"][:1] == ["exam_end"]


async def test_an_end_without_the_option_revokes_nothing(
    client: Client, admin: dict[str, str]
) -> None:
    auth = await started(client, admin)
    response = await client.post(f"/api/v1/admin/plans/{PLAN_ID}/end", headers=admin)
    assert response.status_code == 200
    assert (await client.get("/api/v1/me", headers=auth)).status_code == 200


async def test_a_revoked_token_is_refused_at_the_socket_handshake(
    client: Client, admin: dict[str, str], runtime: Runtime
) -> None:
    await load_plan(client, admin)
    token = await token_of(client, CAND)
    await revoke(client, admin, {"candidates": ["CAND202301"]})
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{socket_url(runtime)}?token={token}"):
            pass
    assert refused.value.response.status_code == 401
    assert b"session_revoked" in refused.value.response.body


async def test_an_open_socket_of_a_revoked_session_is_closed_with_the_reason(
    client: Client, admin: dict[str, str], runtime: Runtime, db: sqlite3.Connection
) -> None:
    auth = await started(client, admin)
    token = auth["Authorization"].removeprefix("Bearer ")
    async with peer(socket_url(runtime), await token_of(client, OTHER)) as bystander:
        async with peer(socket_url(runtime), token) as p:
            await revoke(client, admin, {"candidates": ["CAND202301"]})
            await asyncio.wait_for(p.closed.wait(), 2)
            assert p.close_code == 4401
            assert p.ws.protocol.close_reason == "session_revoked"
        assert not bystander.closed.is_set()
    assert db.execute("SELECT COUNT(*) FROM answer_history").fetchone()[0] == 0


async def test_a_socket_save_after_a_revocation_is_not_taken_even_before_the_close(
    client: Client, admin: dict[str, str], runtime: Runtime, db: sqlite3.Connection
) -> None:
    """The close is a task; a save frame that arrives first meets the check itself."""
    auth = await started(client, admin)
    token = auth["Authorization"].removeprefix("Bearer ")
    async with peer(socket_url(runtime), token) as p:
        await p.ws.send(save_frame("r1", _encoded({"Q001": ("1", 1)})))
        assert (await answer_to(p, "r1"))["type"] == "save_ack"
        assert runtime.sockets is not None
        with mock.patch.object(runtime.sockets, "close_revoked"):  # no sweep: the frame decides
            runtime.tokens.revoked.apply([Revocation(PLAN_ID, "candidate", "CAND202301", 2e9)])
        await p.ws.send(save_frame("r2", _encoded({"Q001": ("2", 2)})))
        await asyncio.wait_for(p.closed.wait(), 2)
        assert p.close_code == 4401
        assert not [f for f in p.frames if f.get("id") == "r2"]
    assert db.execute("SELECT COUNT(*) FROM answer_history").fetchone()[0] == 1


def _encoded(answers: dict[str, tuple[str, int]]) -> bytes:
    return encoded(save_body(answers))


async def test_another_process_announcement_is_applied_through_redis(
    client: Client, admin: dict[str, str], sync_redis: Any
) -> None:
    await load_plan(client, admin)
    token = await token_of(client, CAND)
    later = time.time() + 1
    sync_redis.publish(
        keys.REVOCATIONS_CHANNEL, encode([Revocation(PLAN_ID, "candidate", "CAND202301", later)])
    )
    for _ in range(100):
        if (await me(client, token)).status_code == 401:
            break
        await asyncio.sleep(0.02)
    await error_of(await me(client, token), 401, "session_revoked")


@pytest.mark.parametrize("settings_overrides", [{"revocation_reload_seconds": 0.2}])
async def test_a_lost_announcement_is_made_good_by_the_reload_from_sqlite(
    client: Client, admin: dict[str, str], runtime: Runtime, db: sqlite3.Connection
) -> None:
    """Another process committed a revocation whose message never came: the periodic reload
    from SQLite refuses the session within `revocation_reload_seconds`."""
    await load_plan(client, admin)
    token = await token_of(client, CAND)
    with db:
        db.execute(
            "INSERT INTO session_revocation VALUES (?, 'candidate', 'CAND202301', ?, 'admin', '')",
            (PLAN_ID, time.time() + 1),
        )
    await eventually(lambda: runtime.tokens.revoked.revoked(_principal(token, runtime)), 2.0)
    await error_of(await me(client, token), 401, "session_revoked")


def _principal(token: str, runtime: Runtime) -> Principal:
    principal, _ = runtime.tokens._verify_signature(token)  # noqa: SLF001 - the claims alone
    return principal


async def test_revocations_survive_a_restart(
    client: Client, admin: dict[str, str], db: sqlite3.Connection, settings: Settings
) -> None:
    """A process starting loads what SQLite holds (and skips what no live session predates)."""
    await load_plan(client, admin)
    token = await token_of(client, CAND)
    await revoke(client, admin, {"candidates": ["CAND202301"]})
    with db:
        db.execute(
            "INSERT INTO session_revocation VALUES (?, '', '', ?, 'admin', '')",
            ("OLDPLAN", time.time() - 13 * 3600),
        )
    fresh = Revoked()
    database = await Database.open(settings.storage.sqlite_path)
    try:
        sync = RevocationSync(fresh, database, mock.Mock(), 12 * 3600, 10)
        await sync.load()
    finally:
        await database.close()
    assert len(fresh) == 1
    tokens = Tokens(SECRET_KEY, ADMIN_TOKEN, 12 * 3600)
    assert fresh.revoked(tokens.verify(token))


def test_a_revocation_refuses_what_was_signed_before_it_to_the_millisecond() -> None:
    """Tokens issued in the same whole second as the revocation: before it refused, after it
    not (itsdangerous alone stamps whole seconds)."""
    tokens = Tokens(SECRET_KEY, ADMIN_TOKEN, 3600)
    who = Principal("candidate", PLAN_ID, "CAND202301", "GROUP01", "dev1")
    second = float(int(time.time()) - 5)
    with mock.patch("time.time", return_value=second + 0.2):
        before = tokens.issue(who)
    with mock.patch("time.time", return_value=second + 0.8):
        after = tokens.issue(who)
    tokens.revoked.apply([Revocation(PLAN_ID, "candidate", "CAND202301", second + 0.5)])
    assert tokens.verify(after) == who
    with pytest.raises(Exception, match="revoked"):
        tokens.verify(before)


def test_a_whole_role_or_plan_revocation_spares_other_roles_and_plans() -> None:
    revoked = Revoked()
    revoked.apply([Revocation(PLAN_ID, "candidate", EVERYONE, 100.0)])
    revoked.apply([Revocation("PLAN2", EVERYONE, EVERYONE, 100.0)])
    old = {"issued_at": 50.0}
    assert revoked.revoked(Principal("candidate", PLAN_ID, "C1", None, **old))
    assert not revoked.revoked(Principal("supervisor", PLAN_ID, "S1", None, **old))
    assert revoked.revoked(Principal("supervisor", "PLAN2", "S1", None, **old))
    assert not revoked.revoked(Principal("candidate", "PLAN3", "C1", None, **old))
    assert not revoked.revoked(Principal("candidate", PLAN_ID, "C1", None, issued_at=150.0))
    # An earlier time never narrows a revocation.
    revoked.apply([Revocation(PLAN_ID, "candidate", EVERYONE, 10.0)])
    assert revoked.revoked(Principal("candidate", PLAN_ID, "C1", None, **old))


def test_a_reload_read_before_a_revocation_does_not_undo_it() -> None:
    """The reload's read may start before a revocation commits and end after it was applied
    here: what it brings is merged, never a narrower table; only records past every session's
    life are dropped."""
    revoked = Revoked()
    revoked.apply([Revocation(PLAN_ID, "candidate", "C1", 100.0)])
    revoked.load([], alive_after=50.0)  # a snapshot without it
    assert revoked.revoked(Principal("candidate", PLAN_ID, "C1", None, issued_at=99.0))
    revoked.load([Revocation(PLAN_ID, "candidate", "C2", 200.0)], alive_after=150.0)
    assert not revoked.revoked(Principal("candidate", PLAN_ID, "C1", None, issued_at=99.0))
    assert revoked.revoked(Principal("candidate", PLAN_ID, "C2", None, issued_at=199.0))
    assert len(revoked) == 1


async def test_a_revoked_session_upload_is_refused_before_its_body_is_read(
    client: Client, admin: dict[str, str]
) -> None:
    """Captures and logs take big bodies: a revoked token is answered before Quart reads one,
    and the connection closed (`Connection: close` comes from that check only)."""
    await load_plan(client, admin)
    token = await token_of(client, CAND)
    await revoke(client, admin, {"candidates": ["CAND202301"]})
    for path in ("/api/v1/captures?kind=webcam", "/api/v1/logs"):
        headers = {**bearer(token), "Content-Type": "image/jpeg"}
        response = await client.post(path, data=b"x" * 4096, headers=headers)
        await error_of(response, 401, "session_revoked")
        assert response.headers.get("Connection") == "close", path
