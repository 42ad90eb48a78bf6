"""Failed sign-ins, limited (docs/server.md, "Login attempts").

Each sign-in attempt is admitted or refused by one Lua call, before its secret is compared, so
an attempt refused tells nothing about the code it carried, and a flood of them never reaches
SQLite. Only settled failures count toward the minute limits and the lockout: a right code is
never refused because others are being checked at the same moment (an exam room behind one
NAT signs in at once). What bounds concurrent guesses instead is a small number of attempts
open at a time per account and per address (`OPEN_PER_*`): an attempt beyond it waits for one
to settle (up to `OPEN_WAIT_SECONDS`), so a burst of wrong guesses gets at most that number
minus one past a limit. Settling (one more call) closes the attempt and, for a failure, counts
it and may lock the account.

Time is the caller's clock, passed into the scripts (`now`, epoch ms): Redis' TTLs only collect
keys nobody uses, so a test can run two hours of attempts in a second. While Redis is
unreachable sign-in goes on (it is promised to work during an outage), and each process limits
failures alone (outage_limiter.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..base.clock import iso
from ..config import Logins
from ..errors import ApiError
from ..store import keys
from .outage_limiter import OutageLimiter
from .tokens import Role

log = logging.getLogger(__name__)

Kind = Literal["candidate", "supervisor", "key"]
KINDS: tuple[Kind, ...] = ("candidate", "supervisor", "key")
WINDOW_MS = 60_000
# Attempts open at once (admitted, not settled). A candidate or supervisor signs in from one or
# two devices; a key login's account is the room's address, so it gets the address's bound.
OPEN_PER_ACCOUNT = 2
OPEN_PER_ADDRESS = 8
OPEN_EXPIRY_MS = 10_000  # an attempt whose process died stops holding its place
OPEN_WAIT_SECONDS = 10.0  # real time an attempt waits for a place before 429 (a 40-room: ~1 s)
_POLL_SECONDS = 0.02

# KEYS: the account's failures, the address's failures, the account's open attempts, the
# address's open attempts, the account hash. ARGV: now (ms), attempt id, window (ms), account
# limit, address limit, account's open bound, address's open bound, open expiry (ms). Answers
# {'locked', ms left, locked until}, {'throttled', ms to wait}, {'busy'} or {'ok'}.
_ADMIT = """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[3])
local locked = tonumber(redis.call('HGET', KEYS[5], 'lockedUntil') or '0')
if locked > now then
  return {'locked', locked - now, locked}
end
local function wait(key, limit)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if limit <= 0 then return 0 end
  local held = redis.call('ZCARD', key)
  if held < limit then return 0 end
  local frees = redis.call('ZRANGE', key, held - limit, held - limit, 'WITHSCORES')
  return math.max(1, tonumber(frees[2]) + window - now)
end
local waiting = math.max(wait(KEYS[1], tonumber(ARGV[4])), wait(KEYS[2], tonumber(ARGV[5])))
if waiting > 0 then
  return {'throttled', waiting}
end
local expiry = tonumber(ARGV[8])
for i = 3, 4 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - expiry)
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[i + 3]) then
    return {'busy'}
  end
end
for i = 3, 4 do
  redis.call('ZADD', KEYS[i], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[i], expiry)
end
return {'ok'}
"""

# KEYS: as _ADMIT's, then the plan's lockouts. ARGV: attempt id, `success`, `give_back` or
# `failure`, now (ms), window (ms), lockout after, lockout (ms), account name, 1 to count the
# failure for the account (0: a plan that does not exist), 1 if it may lock the account.
# Answers the lockout's end (epoch ms) when this failure locked the account, else 0.
_SETTLE = """
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
local mode, now, window = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
if mode == 'success' then
  redis.call('HDEL', KEYS[5], 'fails', 'lastFail')
  return 0
end
if mode ~= 'failure' then
  return 0
end
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('PEXPIRE', KEYS[2], window)
if ARGV[8] ~= '1' then
  return 0
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], window)
if ARGV[9] ~= '1' then
  return 0
end
-- A run of failures ends when none came for a lockout's length.
local lockout = tonumber(ARGV[6])
local fails = tonumber(redis.call('HGET', KEYS[5], 'fails') or '0')
if now - tonumber(redis.call('HGET', KEYS[5], 'lastFail') or '0') > lockout then
  fails = 0
end
fails = fails + 1
local after = tonumber(ARGV[5])
if after > 0 and lockout > 0 and fails >= after then
  redis.call('HSET', KEYS[5], 'fails', 0, 'lastFail', now, 'lockedUntil', now + lockout)
  redis.call('PEXPIRE', KEYS[5], 2 * lockout + window)
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)
  redis.call('ZADD', KEYS[6], now + lockout, ARGV[7])
  redis.call('PEXPIRE', KEYS[6], lockout + window)
  return now + lockout
end
redis.call('HSET', KEYS[5], 'fails', fails, 'lastFail', now)
redis.call('PEXPIRE', KEYS[5], lockout + window)
return 0
"""

# KEYS: the account hash, the account's failures, the plan's lockouts. ARGV: now (ms), account
# name. 1 if the account was locked out.
_LIFT = """
local locked = tonumber(redis.call('HGET', KEYS[1], 'lockedUntil') or '0')
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[2])
if locked > tonumber(ARGV[1]) then return 1 end
return 0
"""


@dataclass(frozen=True, slots=True)
class Account:
    """Whose failures count together: a candidate or supervisor of a plan, or (key login, where
    the key names nobody until it matches) the plan and the client's address."""

    plan_id: str
    kind: Kind
    subject: str

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.subject}"

    @property
    def role(self) -> Role:
        return "supervisor" if self.kind == "supervisor" else "candidate"

    @property
    def open_bound(self) -> int:
        return OPEN_PER_ADDRESS if self.kind == "key" else OPEN_PER_ACCOUNT

    @property
    def may_lock(self) -> bool:
        """Key login is never locked out: its account is a whole room's address, so one person
        there could lock everyone out; its keys are long secrets, the minute limits suffice."""
        return self.kind != "key"


@dataclass(frozen=True, slots=True)
class Lockout:
    """An account locked out (or lifted): what the alerts carry."""

    account: Account
    locked_until: str  # ISO 8601 UTC
    group_id: str | None = None  # a candidate's group, when the id is a candidate's
    address: str = ""  # where the failure that locked it came from
    known: bool = True  # the id is a real candidate's or supervisor's (not one made up)

    def to_json(self) -> dict[str, str | None]:
        return {
            "planId": self.account.plan_id,
            "kind": self.account.kind,
            "id": self.account.subject,
            "groupId": self.group_id,
            "lockedUntil": self.locked_until,
            "address": self.address,
        }


class LockoutAlerts(Protocol):
    """Where a lockout and its lifting are announced. The runtime registers the channels that
    exist (access/lockout_alerts.py); another channel (a webhook) is one more of these in
    `LoginThrottle.alerts`."""

    async def locked(self, lockout: Lockout) -> None: ...

    async def lifted(self, lockout: Lockout, by: str) -> None: ...


def _iso_ms(epoch_ms: float) -> str:
    return iso(datetime.fromtimestamp(epoch_ms / 1000, UTC))


def _seconds(ms: float) -> int:
    return max(1, math.ceil(ms / 1000))


def _too_many(wait_ms: int) -> ApiError:
    return ApiError(
        429,
        "too_many_attempts",
        "too many failed sign-ins; wait before trying again",
        {"retryAfter": _seconds(wait_ms)},
    )


class LoginThrottle:
    def __init__(
        self,
        redis: Redis,
        limits: Logins,
        clock: Callable[[], float] = time.time,
        alerts: Sequence[LockoutAlerts] = (),
    ) -> None:
        self.limits = limits
        self.clock = clock  # epoch seconds; tests move it
        self.alerts = list(alerts)
        self._admit = redis.register_script(_ADMIT)
        self._settle = redis.register_script(_SETTLE)
        self._lift = redis.register_script(_LIFT)
        self._redis = redis
        self.outage = OutageLimiter(WINDOW_MS)  # counts while Redis cannot be reached

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def admit(self, account: Account, address: str) -> Attempt:
        """Open one attempt, or refuse it with `429 too_many_attempts` / `429 locked_out`. An
        attempt beyond the open bound waits for a place (real time, not `clock`)."""
        token = secrets.token_hex(8)
        deadline = time.monotonic() + OPEN_WAIT_SECONDS
        while True:
            attempt = await self._try_admit(account, address, token)
            if attempt is not None:
                return attempt
            if time.monotonic() >= deadline:
                _log_failure(account, address, "too_many_attempts")
                raise _too_many(1000)
            await asyncio.sleep(_POLL_SECONDS * (1 + random.random()))  # noqa: S311

    async def _try_admit(self, account: Account, address: str, token: str) -> Attempt | None:
        """The attempt, opened; None while the open bound is reached."""
        limits = self.limits
        attempt_keys = _keys(account, address)
        try:
            reply: Any = await self._admit(
                keys=attempt_keys[:5],
                args=[
                    self.now_ms(),
                    token,
                    WINDOW_MS,
                    limits.login_failures_per_account_minute,
                    limits.login_failures_per_address_minute,
                    account.open_bound,
                    OPEN_PER_ADDRESS,
                    OPEN_EXPIRY_MS,
                ],
            )
        except RedisError as exc:
            log.warning("login throttle cannot reach Redis, this process limits alone: %s", exc)
            return self._admit_locally(account, address, attempt_keys, token)
        verdict = reply[0]
        if verdict == "locked":
            _log_failure(account, address, "locked_out")
            raise ApiError(
                429,
                "locked_out",
                "too many failed sign-ins: this account is locked; a supervisor can lift it",
                {"retryAfter": _seconds(int(reply[1])), "lockedUntil": _iso_ms(int(reply[2]))},
            )
        if verdict == "throttled":
            _log_failure(account, address, "too_many_attempts")
            raise _too_many(int(reply[1]))
        if verdict == "busy":
            return None
        return Attempt(self, account, address, attempt_keys, token)

    def _admit_locally(
        self, account: Account, address: str, attempt_keys: list[str], token: str
    ) -> Attempt | None:
        limits = self.limits
        windows = [
            (attempt_keys[0], limits.login_failures_per_account_minute, account.open_bound),
            (attempt_keys[1], limits.login_failures_per_address_minute, OPEN_PER_ADDRESS),
        ]
        wait_ms = self.outage.admit(windows, self.now_ms(), token)
        if wait_ms is None:
            return None
        if wait_ms:
            _log_failure(account, address, "too_many_attempts")
            raise _too_many(wait_ms)
        return Attempt(self, account, address, attempt_keys, token, local=True)

    async def lift(self, account: Account, by: str, group_id: str | None = None) -> bool:
        """End the account's lockout and its run of failures; True if it was locked out."""
        lifted = bool(
            await self._lift(
                keys=[
                    keys.login_account(account.plan_id, account.name),
                    keys.login_failures(account.plan_id, account.name),
                    keys.login_lockouts(account.plan_id),
                ],
                args=[self.now_ms(), account.name],
            )
        )
        if lifted:
            log.warning(
                "lockout lifted: plan=%s role=%s id=%s by=%s",
                account.plan_id,
                account.role,
                account.subject,
                by,
            )
            lockout = Lockout(account, _iso_ms(self.now_ms()), group_id)
            for channel in self.alerts:
                await _announce(channel.lifted(lockout, by))
        return lifted

    async def lockouts(self, plan_id: str) -> list[dict[str, str]]:
        """The plan's accounts locked out now, soonest end first."""
        found: Any = await self._redis.zrange(
            keys.login_lockouts(plan_id),
            f"({self.now_ms()}",
            "+inf",
            byscore=True,
            withscores=True,
        )
        return read_lockouts(found)

    async def _settle_attempt(self, attempt: Attempt, mode: str, plan_known: bool = True) -> int:
        """Close the attempt; for a `failure`, count it. The lockout's end (epoch ms) when this
        failure locked the account, else 0."""
        now = self.now_ms()
        if attempt.local:  # no lockout here: a run in a row needs every process's count
            counted = attempt.keys[:2] if plan_known else attempt.keys[1:2]
            self.outage.close(
                attempt.keys[:2], attempt.token, counted if mode == "failure" else (), now
            )
            return 0
        account = attempt.account
        try:
            locked: Any = await self._settle(
                keys=attempt.keys,
                args=[
                    attempt.token,
                    mode,
                    now,
                    WINDOW_MS,
                    self.limits.login_lockout_after,
                    self.limits.login_lockout_seconds * 1000,
                    account.name,
                    1 if plan_known else 0,
                    1 if account.may_lock and plan_known else 0,
                ],
            )
        except RedisError as exc:  # its place expires; a failure is kept for the outage counts
            log.warning("login throttle could not settle an attempt: %s", exc)
            failed = attempt.keys[:2] if mode == "failure" else []
            self.outage.close([], attempt.token, failed, now)
            return 0
        return int(locked)


def read_lockouts(found: Sequence[tuple[str, float]]) -> list[dict[str, str]]:
    """`login_lockouts` members with their scores, as the API shows them."""
    listed = []
    for member, until in found:
        kind, _, subject = member.partition(":")
        listed.append({"kind": kind, "id": subject, "lockedUntil": _iso_ms(until)})
    return listed


@dataclass
class Attempt:
    """One admitted sign-in attempt: settle it once, with `succeeded`, `failed` or
    `give_back`. `local`: booked by this process alone, Redis being unreachable."""

    throttle: LoginThrottle
    account: Account
    address: str
    keys: list[str]
    token: str
    local: bool = False

    async def succeeded(self) -> None:
        """A right code: it ends the account's run of failures."""
        await self.throttle._settle_attempt(self, "success")

    async def give_back(self) -> None:
        """The attempt was no guess (the plan is not open for sign-in, say): uncount it."""
        await self.throttle._settle_attempt(self, "give_back")

    async def failed(
        self,
        reason: str,
        group_id: str | None = None,
        known: bool = False,
        plan_known: bool = True,
    ) -> None:
        """A wrong id or code: count it, log it, and announce a lockout it caused. `known`: the
        id is a real person's; `plan_known` False (no such plan) counts it for the address
        only, so made-up plan ids leave no keys of their own."""
        _log_failure(self.account, self.address, reason)
        locked_ms = await self.throttle._settle_attempt(self, "failure", plan_known)
        if not locked_ms:
            return
        locked_until = _iso_ms(locked_ms)
        lockout = Lockout(self.account, locked_until, group_id, self.address, known)
        log.warning(
            "sign-in locked out: plan=%s role=%s id=%s address=%s until=%s",
            self.account.plan_id,
            self.account.role,
            self.account.subject,
            self.address,
            locked_until,
        )
        for channel in self.throttle.alerts:
            await _announce(channel.locked(lockout))


def _keys(account: Account, address: str) -> list[str]:
    """The keys of `_SETTLE` (the first five are `_ADMIT`'s). The address's keys span plans, so
    a new plan id per request is no new window."""
    return [
        keys.login_failures(account.plan_id, account.name),
        keys.login_address_failures(address),
        keys.login_open(account.plan_id, account.name),
        keys.login_address_open(address),
        keys.login_account(account.plan_id, account.name),
        keys.login_lockouts(account.plan_id),
    ]


def _log_failure(account: Account, address: str, reason: str) -> None:
    # Never the code or the key: a log is read by more people than the codes are.
    subject = "-" if account.kind == "key" else account.subject
    log.warning(
        "failed sign-in: plan=%s role=%s id=%s address=%s reason=%s",
        account.plan_id,
        account.role,
        subject,
        address,
        reason,
    )


async def _announce(work: Any) -> None:
    """One channel's announcement; a channel that fails does not fail the sign-in."""
    try:
        await work
    except Exception:
        log.exception("a lockout alert could not be sent")
