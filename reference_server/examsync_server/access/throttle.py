"""Failed sign-ins, limited (docs/server.md, "Login attempts").

Each sign-in attempt is admitted or refused by one Lua call, before its secret is compared, so
an attempt refused tells nothing about the code it carried, and a flood of them never reaches
SQLite. Admitting books the attempt as a failure in advance, in the sliding minute of its
account and of its client address and in the account's failures in a row: concurrent guesses
cannot all pass a check made before any of them is counted. A success (or an attempt that was
no guess, such as one at a plan not yet prepared) gives its booking back, with one more call.

The attempt that makes `lockout_after` failures in a row locks the account at once; if its code
was right after all, its success lifts that lock again. Time is the caller's clock, passed into
the script (`now`, epoch ms): Redis' TTLs only collect keys nobody uses, so a test can run two
hours of attempts in a second. While Redis is unreachable sign-in goes on (it is promised to
work during an outage), and each process limits failures alone (outage_limiter.py).
"""

from __future__ import annotations

import logging
import math
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

# KEYS: the account's failures, the address's failures, the account hash, the plan's lockouts.
# ARGV: now (ms), attempt id, window (ms), account limit, address limit, lockout after,
# lockout (ms), account name. Answers {'locked', ms left, locked until}, {'throttled', ms to
# wait} or {'ok', 1 if this attempt locked the account else 0, locked until}.
_ADMIT = """
local now, window, lockout = tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[7])
local locked = tonumber(redis.call('HGET', KEYS[3], 'lockedUntil') or '0')
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
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[i], window)
end
-- A run of failures ends when none came for a lockout's length.
local fails = tonumber(redis.call('HGET', KEYS[3], 'fails') or '0')
if now - tonumber(redis.call('HGET', KEYS[3], 'lastFail') or '0') > lockout then
  fails = 0
end
fails = fails + 1
local after = tonumber(ARGV[6])
if after > 0 and lockout > 0 and fails >= after then
  redis.call('HSET', KEYS[3], 'fails', 0, 'lastFail', now, 'lockedUntil', now + lockout)
  redis.call('PEXPIRE', KEYS[3], 2 * lockout + window)
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  redis.call('ZADD', KEYS[4], now + lockout, ARGV[8])
  redis.call('PEXPIRE', KEYS[4], lockout + window)
  return {'ok', 1, now + lockout}
end
redis.call('HSET', KEYS[3], 'fails', fails, 'lastFail', now)
redis.call('PEXPIRE', KEYS[3], lockout + window)
return {'ok', 0, 0}
"""

# KEYS: as _ADMIT's. ARGV: attempt id, `success` or `give_back`, 1 if the attempt locked the
# account, account name, the failures in a row to restore when a locking attempt is given back.
_SETTLE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[3]) == 0 then
  return 0
end
if ARGV[3] == '1' then
  redis.call('HDEL', KEYS[3], 'lockedUntil')
  redis.call('ZREM', KEYS[4], ARGV[4])
end
if ARGV[2] == 'success' then
  redis.call('HDEL', KEYS[3], 'fails', 'lastFail')
elseif ARGV[3] == '1' then
  redis.call('HSET', KEYS[3], 'fails', ARGV[5])
elseif redis.call('HINCRBY', KEYS[3], 'fails', -1) < 0 then
  redis.call('HSET', KEYS[3], 'fails', 0)
end
return 1
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


@dataclass(frozen=True, slots=True)
class Lockout:
    """An account locked out (or lifted): what the alerts carry."""

    account: Account
    locked_until: str  # ISO 8601 UTC
    group_id: str | None = None  # a candidate's group, when the id is a candidate's
    address: str = ""  # where the failure that locked it came from

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
        """Book one attempt, or refuse it with `429 too_many_attempts` / `429 locked_out`."""
        limits = self.limits
        lockout_ms = limits.login_lockout_seconds * 1000
        attempt_keys = _keys(account, address)
        token = secrets.token_hex(8)
        try:
            reply: Any = await self._admit(
                keys=attempt_keys,
                args=[
                    self.now_ms(),
                    token,
                    WINDOW_MS,
                    limits.login_failures_per_account_minute,
                    limits.login_failures_per_address_minute,
                    limits.login_lockout_after,
                    lockout_ms,
                    account.name,
                ],
            )
        except RedisError as exc:
            log.warning("login throttle cannot reach Redis, this process limits alone: %s", exc)
            limits_by_window = zip(
                attempt_keys[:2],
                (
                    limits.login_failures_per_account_minute,
                    limits.login_failures_per_address_minute,
                ),
                strict=True,
            )
            wait_ms = self.outage.admit(list(limits_by_window), self.now_ms(), token)
            if wait_ms:
                _log_failure(account, address, "too_many_attempts")
                raise _too_many(wait_ms) from None
            return Attempt(self, account, address, attempt_keys, token, local=True)
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
        locked_until = _iso_ms(int(reply[2])) if int(reply[1]) else None
        return Attempt(self, account, address, attempt_keys, token, locked_until)

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

    async def _settle_attempt(self, attempt: Attempt, mode: str) -> None:
        if attempt.local:  # either way, a local booking is given back: no run in a row here
            self.outage.give_back(attempt.keys[:2], attempt.token)
            return
        try:
            await self._settle(
                keys=attempt.keys,
                args=[
                    attempt.token,
                    mode,
                    1 if attempt.locked_until else 0,
                    attempt.account.name,
                    max(0, self.limits.login_lockout_after - 1),
                ],
            )
        except RedisError as exc:  # the booking stays: one failure too many, at worst
            log.warning("login throttle could not settle an attempt: %s", exc)


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
    locked_until: str | None = None  # set when this attempt's failure locks the account
    local: bool = False

    async def succeeded(self) -> None:
        await self.throttle._settle_attempt(self, "success")

    async def give_back(self) -> None:
        """The attempt was no guess (the plan is not open for sign-in, say): uncount it."""
        await self.throttle._settle_attempt(self, "give_back")

    async def failed(self, reason: str, group_id: str | None = None) -> None:
        """A wrong id or code: it stays counted; log it, and announce a lockout it caused."""
        _log_failure(self.account, self.address, reason)
        if self.locked_until is None:
            return
        lockout = Lockout(self.account, self.locked_until, group_id, self.address)
        log.warning(
            "sign-in locked out: plan=%s role=%s id=%s address=%s until=%s",
            self.account.plan_id,
            self.account.role,
            self.account.subject,
            self.address,
            self.locked_until,
        )
        for channel in self.throttle.alerts:
            await _announce(channel.locked(lockout))


def _keys(account: Account, address: str) -> list[str]:
    return [
        keys.login_failures(account.plan_id, account.name),
        keys.login_address_failures(account.plan_id, address),
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
