"""Failed sign-ins are limited (issue 15, defect 3): per account and per address, with a lockout
that a supervisor or the admin lifts, every failure logged, the lockout announced.

Real Redis and the real Lua; time is the throttle's clock, which the tests move.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from redis.asyncio import Redis

from examsync_server.access import outage_limiter, throttle
from examsync_server.access.addresses import client_address
from examsync_server.access.throttle import Account, LoginThrottle
from examsync_server.app import RUNTIME_KEY, create_app
from examsync_server.config import Logins
from examsync_server.demo.sample import PLAN_ID, sample_plan
from examsync_server.process.embedded_redis import EmbeddedRedis
from examsync_server.runtime import Runtime

from .conftest import ADMIN_TOKEN, error_of, load_plan, login
from .test_recovery import own_settings
from .test_sessions import SUPERVISOR, WEB, bearer, key_plan

WRONG = {**WEB, "authCode": "AUTH0000"}


class Clock:
    """The throttle's clock, moved by the test (epoch seconds)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(runtime: Runtime) -> Clock:
    moved = Clock()
    runtime.throttle.clock = moved
    return moved


async def sign_in(client: Client, body: dict[str, Any], address: str = "192.0.2.1") -> Any:
    return await client.post("/api/v1/sessions", json=body, scope_base={"client": (address, 40000)})


async def refused(
    client: Client, body: dict[str, Any], code: str, address: str = "192.0.2.1"
) -> dict[str, Any]:
    response = await sign_in(client, body, address)
    details = await error_of(response, 429, code)
    assert response.headers["Retry-After"] == str(details["retryAfter"])
    return details


async def wrong(
    client: Client, body: dict[str, Any], times: int, address: str = "192.0.2.1"
) -> None:
    for _ in range(times):
        await error_of(await sign_in(client, body, address), 401, "invalid_credentials")


# -- the 2-hour attack ----------------------------------------------------------------------------


async def test_two_hours_of_guesses_from_ever_new_addresses_try_under_one_percent_of_a_pin(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An attacker guesses a candidate's 4-digit code once a second for a 2-hour exam, from a
    new address each time (so only the per-candidate limits hold): the codes actually
    compared must be < 1% of the 10,000."""
    caplog.set_level(logging.ERROR)  # 7,200 WARNING lines
    redis = Redis.from_url(redis_url, decode_responses=True)
    clock = Clock()
    throttle = LoginThrottle(redis, Logins(), clock)
    account = Account(PLAN_ID, "candidate", "CAND202301")
    compared = 0
    try:
        for second in range(2 * 3600):
            clock.now += 1
            try:
                attempt = await throttle.admit(account, f"10.{second // 250}.{second % 250}.1")
            except Exception as exc:
                assert getattr(exc, "status", None) == 429, exc
                continue
            compared += 1
            await attempt.failed("wrong code")
    finally:
        await redis.aclose()
    # 10 in a row lock for 15 min: about 10 per 16 minutes, 80 in 2 hours.
    assert 0 < compared < 100, compared


# -- HTTP ---------------------------------------------------------------------------------------


async def test_the_sixth_failure_in_a_minute_is_429_with_retry_after_and_refused_unread(
    client: Client, admin: dict[str, str], clock: Clock
) -> None:
    await load_plan(client, admin)
    await wrong(client, WRONG, 5)
    details = await refused(client, WRONG, "too_many_attempts")
    assert details == {"retryAfter": 60}
    # The right code is refused too: a throttled attempt's code is never compared.
    clock.now += 30
    assert await refused(client, WEB, "too_many_attempts") == {"retryAfter": 30}
    clock.now += 30
    await login(client, WEB)


async def test_unknown_ids_are_throttled_exactly_like_wrong_codes(
    client: Client, admin: dict[str, str], clock: Clock
) -> None:
    await load_plan(client, admin)
    unknown = {**WRONG, "candidateId": "CAND209999"}
    for _ in range(5):
        known = await sign_in(client, WRONG)
        other = await sign_in(client, unknown)
        assert (known.status_code, await known.get_json()) == (
            other.status_code,
            await other.get_json(),
        )
    known, other = await sign_in(client, WRONG), await sign_in(client, unknown)
    assert known.status_code == other.status_code == 429
    assert await known.get_json() == await other.get_json()


async def test_ten_failures_in_a_row_lock_out_until_lifted_or_over(
    client: Client, admin: dict[str, str], clock: Clock, sync_redis: Any
) -> None:
    await load_plan(client, admin)
    await wrong(client, WRONG, 5)
    clock.now += 60
    await wrong(client, WRONG, 5, address="192.0.2.2")
    details = await refused(client, WEB, "locked_out", address="192.0.2.3")
    assert details["retryAfter"] == 900
    assert details["lockedUntil"].endswith("Z")
    clock.now += 899
    assert (await refused(client, WEB, "locked_out"))["retryAfter"] == 1
    clock.now += 1
    await login(client, WEB)
    # Announced: to the candidate's group's supervisors, and on the admins' stream.
    alerts = [f for _, f in sync_redis.xrange("socket_queue") if f["type"] == "alert"]
    assert [(a["candidateId"], a["groupId"], a["audience"]) for a in alerts] == [
        ("CAND202301", "GROUP01", "supervisors")
    ]
    frame = json.loads(alerts[0]["data"])
    assert (frame["kind"], frame["lockedUntil"]) == ("locked_out", details["lockedUntil"])
    admin_alerts = sync_redis.xrange("queue:alerts")
    assert [(a["type"], a["kind"], a["id"]) for _, a in admin_alerts] == [
        ("locked_out", "candidate", "CAND202301")
    ]


async def test_a_success_ends_the_run_of_failures(
    client: Client, admin: dict[str, str], clock: Clock
) -> None:
    await load_plan(client, admin)
    await wrong(client, WRONG, 5)
    clock.now += 60
    await wrong(client, WRONG, 3)
    await login(client, WEB)  # 8 in a row, then a success
    await wrong(client, WRONG, 1)  # without the reset, the 10th in a row
    await login(client, WEB)


async def lock_out(client: Client, clock: Clock) -> None:
    await wrong(client, WRONG, 5)
    clock.now += 60
    await wrong(client, WRONG, 5)
    await refused(client, WEB, "locked_out")


async def test_a_supervisor_of_the_group_lifts_a_lockout_shown_in_the_snapshot(
    client: Client, admin: dict[str, str], clock: Clock, sync_redis: Any
) -> None:
    await load_plan(client, admin)
    await lock_out(client, clock)
    other = await login(
        client, {**SUPERVISOR, "supervisorId": "SUP202302", "authCode": "SUPAUTH02"}
    )
    response = await client.delete(
        "/api/v1/supervisor/lockouts/CAND202301", headers=bearer(other["token"])
    )
    assert await error_of(response, 403, "other_group") == {"candidateId": "CAND202301"}
    await refused(client, WEB, "locked_out")

    own = await login(client, SUPERVISOR)
    snapshot = await (
        await client.get("/api/v1/supervisor/snapshot", headers=bearer(own["token"]))
    ).get_json()
    locked = {e["examineeId"]: e["lockedUntil"] for e in snapshot["examinees"]}
    assert locked["CAND202301"] is not None and locked["CAND202303"] is None
    response = await client.delete(
        "/api/v1/supervisor/lockouts/CAND202301", headers=bearer(own["token"])
    )
    assert response.status_code == 200
    assert await response.get_json() == {
        "planId": PLAN_ID,
        "candidateId": "CAND202301",
        "lifted": True,
    }
    candidate = await login(client, WEB)
    response = await client.delete(
        "/api/v1/supervisor/lockouts/CAND202301", headers=bearer(candidate["token"])
    )
    await error_of(response, 403, "supervisors_only")
    response = await client.delete(
        "/api/v1/supervisor/lockouts/CAND209999", headers=bearer(own["token"])
    )
    await error_of(response, 404, "candidate_not_found")
    lifted = [
        json.loads(f["data"]) for _, f in sync_redis.xrange("socket_queue") if f["type"] == "alert"
    ]
    assert [a["kind"] for a in lifted] == ["locked_out", "lockout_lifted"]


async def test_the_admin_sees_and_lifts_lockouts(
    client: Client, admin: dict[str, str], clock: Clock
) -> None:
    await load_plan(client, admin)
    await lock_out(client, clock)
    status = await (await client.get(f"/api/v1/admin/plans/{PLAN_ID}", headers=admin)).get_json()
    assert [(x["kind"], x["id"]) for x in status["lockouts"]] == [("candidate", "CAND202301")]
    path = f"/api/v1/admin/plans/{PLAN_ID}/lockouts"
    response = await client.delete(f"{path}/teacher/CAND202301", headers=admin)
    await error_of(response, 422, "invalid_request")
    response = await client.delete(f"{path}/candidate/CAND202301", headers=admin)
    assert (await response.get_json())["lifted"] is True
    await login(client, WEB)
    status = await (await client.get(f"/api/v1/admin/plans/{PLAN_ID}", headers=admin)).get_json()
    assert status["lockouts"] == []
    response = await client.delete(f"{path}/candidate/CAND202301", headers=admin)
    assert (await response.get_json())["lifted"] is False


async def test_supervisor_login_is_throttled_and_locked_out_per_supervisor(
    client: Client, admin: dict[str, str], clock: Clock
) -> None:
    await load_plan(client, admin)
    bad = {**SUPERVISOR, "authCode": "SUPAUTH99"}
    await wrong(client, bad, 5)
    await refused(client, SUPERVISOR, "too_many_attempts")
    clock.now += 60
    await wrong(client, bad, 5, address="192.0.2.9")
    await refused(client, SUPERVISOR, "locked_out", address="192.0.2.10")
    path = f"/api/v1/admin/plans/{PLAN_ID}/lockouts/supervisor/SUP202301"
    assert (await (await client.delete(path, headers=admin)).get_json())["lifted"] is True
    await login(client, SUPERVISOR)


async def test_key_login_is_throttled_per_plan_and_address_but_never_locked_out(
    client: Client, admin: dict[str, str], clock: Clock
) -> None:
    """Key login's account is a whole room's address: one person there must not lock the
    room out (only the minute limit holds; keys are long secrets)."""
    await load_plan(client, admin, plan=key_plan())
    bad, good = (
        {"planId": PLAN_ID, "key": "KEY-WRONG"},
        {"planId": PLAN_ID, "key": "KEY-CAND202302"},
    )
    await wrong(client, bad, 5)
    await refused(client, good, "too_many_attempts")
    assert (await sign_in(client, good, address="192.0.2.77")).status_code == 201
    for _ in range(3):  # 20 wrong keys in a row: a candidate's account would be locked
        clock.now += 60
        await wrong(client, bad, 5)
    clock.now += 60
    assert (await sign_in(client, good)).status_code == 201
    path = f"/api/v1/admin/plans/{PLAN_ID}/lockouts/key/192.0.2.1"
    assert (await (await client.delete(path, headers=admin)).get_json())["lifted"] is False


# -- at once: only settled failures count; attempts open at a time are bounded -----------------


def forty(key_login: bool = False) -> dict[str, Any]:
    plan = sample_plan(candidates=40)
    if key_login:
        plan["exam_plan"]["login_method"] = "키 인증"
    return plan


async def test_a_room_of_forty_behind_one_address_signs_in_and_renews_at_once(
    client: Client, admin: dict[str, str], clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Attempts being checked are no failures: an exam room behind one NAT starting at once
    (and renewing at once after a revocation) is never refused."""
    await load_plan(client, admin, plan=forty())
    caplog.set_level(logging.WARNING, "examsync_server.access.throttle")
    bodies = [
        {"planId": PLAN_ID, "candidateId": f"CAND2023{i + 1:02d}", "authCode": f"AUTH{1234 + i}"}
        for i in range(40)
    ]
    for renewal in (False, True):
        sent = [{**body, "activate": not renewal} for body in bodies]
        answers = await asyncio.gather(*(sign_in(client, body) for body in sent))
        assert [a.status_code for a in answers] == [201] * 40, renewal
    assert "failed sign-in" not in caplog.text


async def test_a_room_of_forty_signs_in_by_key_at_once(
    client: Client, admin: dict[str, str], clock: Clock
) -> None:
    await load_plan(client, admin, plan=forty(key_login=True))
    bodies = [{"planId": PLAN_ID, "key": f"KEY-CAND2023{i + 1:02d}"} for i in range(40)]
    answers = await asyncio.gather(*(sign_in(client, body) for body in bodies))
    assert [a.status_code for a in answers] == [201] * 40


async def test_concurrent_guesses_pass_a_limit_by_at_most_the_open_bound_less_one(
    client: Client, admin: dict[str, str], clock: Clock
) -> None:
    await load_plan(client, admin, plan=forty())
    # One account: 5 a minute, 2 open at once, so at most 6 codes are compared.
    answers = await asyncio.gather(*(sign_in(client, WRONG) for _ in range(20)))
    codes = sorted(a.status_code for a in answers)
    assert codes.count(401) <= 5 - 1 + throttle.OPEN_PER_ACCOUNT, codes
    assert codes.count(401) >= 5 and set(codes) == {401, 429}, codes
    await refused(client, WEB, "too_many_attempts")
    # One address, many ids: 30 a minute, 8 open at once (and the room still gets in).
    clock.now += 60
    bodies = [{**WRONG, "candidateId": f"CAND3{i:05d}"} for i in range(80)]
    answers = await asyncio.gather(*(sign_in(client, body, "192.0.2.8") for body in bodies))
    codes = sorted(a.status_code for a in answers)
    assert 30 <= codes.count(401) <= 30 - 1 + throttle.OPEN_PER_ADDRESS, codes
    assert set(codes) == {401, 429}


async def test_made_up_plan_ids_share_the_address_window_and_leave_no_keys(
    client: Client, admin: dict[str, str], clock: Clock, sync_redis: Any
) -> None:
    await load_plan(client, admin)
    for i in range(30):
        body = {**WRONG, "planId": f"PLANX{i:05d}"}
        await error_of(await sign_in(client, body), 401, "invalid_credentials")
    await refused(client, {**WRONG, "planId": "PLANX99999"}, "too_many_attempts")
    await refused(client, WEB, "too_many_attempts")  # the address's minute spans plans
    assert sorted(sync_redis.keys("login*")) == ["login_address_failures:192.0.2.1"]


async def test_a_made_up_id_locked_out_alerts_the_admin_but_no_supervisor(
    client: Client, admin: dict[str, str], clock: Clock, sync_redis: Any
) -> None:
    await load_plan(client, admin)
    made_up = {**WRONG, "candidateId": "CAND209999"}
    await wrong(client, made_up, 5)
    clock.now += 60
    await wrong(client, made_up, 5)
    await refused(client, made_up, "locked_out")
    assert [f for _, f in sync_redis.xrange("socket_queue") if f["type"] == "alert"] == []
    admin_alerts = sync_redis.xrange("queue:alerts")
    assert [(a["type"], a["id"]) for _, a in admin_alerts] == [("locked_out", "CAND209999")]


async def test_one_address_gets_thirty_failures_a_minute_whatever_the_ids(
    client: Client, admin: dict[str, str], clock: Clock
) -> None:
    await load_plan(client, admin)
    for i in range(30):
        body = {**WRONG, "candidateId": f"CAND3{i:05d}"}
        await error_of(await sign_in(client, body), 401, "invalid_credentials")
    await refused(client, WEB, "too_many_attempts")
    await login(client, WEB)  # another address (the test client's own)
    clock.now += 60
    assert (await sign_in(client, WEB)).status_code == 201


async def spray(client: Client, count: int, forwarded: str) -> Any:
    """`count` wrong codes for as many ids from one peer, each forwarded for another address;
    then the right code of a candidate not tried yet."""
    for i in range(count):
        response = await client.post(
            "/api/v1/sessions",
            json={**WRONG, "candidateId": f"CAND3{i:05d}"},
            headers={"X-Forwarded-For": forwarded.format(i)},
            scope_base={"client": ("192.0.2.1", 40000)},
        )
        await error_of(response, 401, "invalid_credentials")
    return await client.post(
        "/api/v1/sessions",
        json=WEB,
        headers={"X-Forwarded-For": forwarded.format(count)},
        scope_base={"client": ("192.0.2.1", 40000)},
    )


async def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(
    client: Client, admin: dict[str, str], clock: Clock
) -> None:
    await load_plan(client, admin)
    response = await spray(client, 30, "198.51.100.{}")  # a new address per guess: not believed
    await error_of(response, 429, "too_many_attempts")


@pytest.mark.parametrize("settings_overrides", [{"trusted_proxies": "192.0.2.1"}])
async def test_behind_a_trusted_proxy_each_forwarded_address_counts_apart(
    client: Client, admin: dict[str, str], clock: Clock
) -> None:
    await load_plan(client, admin)
    assert (await spray(client, 30, "198.51.100.{}")).status_code == 201
    response = await spray(client, 30, "6.6.6.{}, 198.51.100.200")  # the proxy saw .200
    await error_of(response, 429, "too_many_attempts")


async def test_a_plan_not_open_for_sign_in_is_no_guess(
    client: Client, admin: dict[str, str], clock: Clock
) -> None:
    await load_plan(client, admin, prepare=False)
    for _ in range(6):
        await error_of(await sign_in(client, WEB), 409, "plan_not_prepared")


async def test_every_failed_sign_in_is_logged_without_its_code(
    client: Client, admin: dict[str, str], clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    await load_plan(client, admin)
    caplog.set_level(logging.WARNING, "examsync_server.access.throttle")
    await wrong(client, WRONG, 1)
    await wrong(client, {**WRONG, "candidateId": "CAND209999"}, 1)
    await wrong(client, WRONG, 4)
    await refused(client, WRONG, "too_many_attempts")
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert lines[:2] == [
        f"failed sign-in: plan={PLAN_ID} role=candidate id=CAND202301 address=192.0.2.1"
        " reason=wrong code",
        f"failed sign-in: plan={PLAN_ID} role=candidate id=CAND209999 address=192.0.2.1"
        " reason=unknown id",
    ]
    assert lines[-1].endswith("reason=too_many_attempts")
    assert len(lines) == 7
    assert not any("AUTH" in line for line in lines)


async def test_sign_in_works_while_redis_is_down_and_each_process_limits_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Fail open, but not wide open: sign-in is promised during an outage, and meanwhile this
    process counts the failures itself (the same limits a minute, no lockout)."""
    redis = EmbeddedRedis.start_sync(tmp_path / "own-redis", appendonly=False)
    try:
        quart_app = create_app(own_settings(tmp_path, redis))
        async with quart_app.test_app() as test_app:
            runtime: Runtime = test_app.app.extensions[RUNTIME_KEY]  # type: ignore[attr-defined]
            clock = runtime.throttle.clock = Clock()
            client = test_app.test_client()
            await load_plan(client, {"Authorization": f"Bearer {ADMIN_TOKEN}"})
            await asyncio.to_thread(redis.stop)
            await login(client, WEB)
            # Attempts being checked are no failures here either: 40 at once all get in.
            bodies = [{**WEB, "activate": False} for _ in range(40)]
            answers = await asyncio.gather(*(sign_in(client, body) for body in bodies))
            assert [a.status_code for a in answers] == [201] * 40
            await wrong(client, WRONG, 5)
            assert await refused(client, WEB, "too_many_attempts") == {"retryAfter": 60}
            assert (await sign_in(client, WEB, address="192.0.2.50")).status_code == 429
            clock.now += 60
            await login(client, WEB)
    finally:
        redis.stop()
    assert "login throttle cannot reach Redis" in caplog.text
    assert "reason=wrong code" in caplog.text


def test_the_address_is_the_peer_unless_a_trusted_proxy_forwarded_it() -> None:
    proxies = Logins(trusted_proxies="10.0.0.0/8, 192.0.2.7").trusted_networks
    assert client_address("203.0.113.5", "198.51.100.1", proxies) == "203.0.113.5"
    assert client_address("203.0.113.5", "198.51.100.1", ()) == "203.0.113.5"
    # The nearest untrusted hop: what the client wrote further left is not believed.
    assert client_address("10.1.1.1", "6.6.6.6, 198.51.100.1, 192.0.2.7", proxies) == "198.51.100.1"
    assert client_address("10.1.1.1", "garbage, 10.2.2.2", proxies) == "10.2.2.2"
    assert client_address(None, None, proxies) == "unknown"


def test_the_outage_limiter_forgets_old_windows_rather_than_grow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outage_limiter, "MAX_WINDOWS", 3)
    limiter = outage_limiter.OutageLimiter(60_000)
    for i in range(3):
        assert limiter.admit([(f"account{i}", 1, 2)], 1_000, f"t{i}") == 0
        limiter.close([f"account{i}"], f"t{i}", [f"account{i}"], 1_000)
    assert limiter.admit([("account0", 1, 2)], 2_000, "again") == 59_000  # still counted
    assert limiter.admit([("account3", 1, 2)], 61_000, "t3") == 0
    limiter.close(["account3"], "t3", ["account3"], 61_000)  # the three others were old
    assert limiter.admit([("account0", 1, 2)], 61_000, "t4") == 0
    limiter.close(["account0"], "t4", [], 61_000)  # a success: not counted
    assert limiter.admit([("account0", 1, 2)], 61_000, "t5") == 0


def test_the_outage_limiter_bounds_attempts_open_at_once() -> None:
    limiter = outage_limiter.OutageLimiter(60_000)
    windows = [("account", 5, 2), ("address", 30, 8)]
    assert limiter.admit(windows, 1_000, "a") == 0
    assert limiter.admit(windows, 1_000, "b") == 0
    assert limiter.admit(windows, 1_000, "c") is None  # two open: wait for a place
    limiter.close(["account", "address"], "a", [], 1_000)
    assert limiter.admit(windows, 1_000, "c") == 0
