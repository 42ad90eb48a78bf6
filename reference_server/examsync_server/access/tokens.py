"""Who is calling: the admin token, and signed, expiring session tokens for people.

Session tokens are itsdangerous-signed claims; they carry the role, plan, subject, group and
the device signed in from, so every check after login is a signature check, not a database
read. Admin and session
tokens are never interchangeable. A token also carries when it was issued (ms), so a
revocation refuses exactly the sessions signed before it (access/revocations.py); the check is
made on every verify, the cached ones too.
"""

from __future__ import annotations

import hmac
import time

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from ..errors import ApiError
from .principal import Principal, Role
from .revocations import Revoked

__all__ = ["Principal", "Role", "Tokens", "bearer"]

VERIFIED_KEPT = 100_000


class Tokens:
    def __init__(self, secret_key: str, admin_token: str, ttl_seconds: int) -> None:
        self._serializer = URLSafeTimedSerializer(secret_key, salt="examsync-session-v1")
        self._admin_token = admin_token.encode()
        self.ttl_seconds = ttl_seconds
        # token -> (principal, expiry): a candidate sends the same token with every save, and
        # checking the signature again each time cost more than the rest of the auth.
        self._verified: dict[str, tuple[Principal, float]] = {}
        self.revoked = Revoked()

    def issue(self, principal: Principal, issued_at: float | None = None) -> str:
        """A session token for `principal`, stamped `issued_at` (epoch seconds; now if None).
        A sign-in passes the time it began, before it read the credentials: a revocation
        committed after that read then refuses the token (access/login.py)."""
        stamp = time.time() if issued_at is None else issued_at
        claims = [
            principal.role,
            principal.plan_id,
            principal.subject_id,
            principal.group_id,
            principal.device_id,
            # itsdangerous stamps whole seconds: a sign-in in the second a revocation was made
            # would be refused with it. Milliseconds tell them apart.
            int(stamp * 1000),
        ]
        return self._serializer.dumps(claims)

    def verify(self, token: str) -> Principal:
        known = self._verified.get(token)
        if known is not None and known[1] > time.time():
            self.revoked.check(known[0])
            return known[0]
        principal, signed_at = self._verify_signature(token)
        if len(self._verified) >= VERIFIED_KEPT:
            self._verified.clear()  # bounded; refilled by the tokens in use
        self._verified[token] = (principal, signed_at + self.ttl_seconds)
        self.revoked.check(principal)
        return principal

    def _verify_signature(self, token: str) -> tuple[Principal, float]:
        try:
            claims, signed = self._serializer.loads(
                token, max_age=self.ttl_seconds, return_timestamp=True
            )
        except SignatureExpired:
            raise ApiError(401, "token_expired", "the session has expired; log in again") from None
        except BadSignature:
            raise ApiError(401, "invalid_token", "the token is not valid") from None
        # A token of four claims was issued before the device was one (device ""), of five
        # before it said when to the millisecond (the signature's whole second).
        match claims:
            case ["candidate" | "supervisor" as role, str(plan), str(subject), group, *rest] if (
                group is None or isinstance(group, str)
            ) and _known_rest(rest):
                device = rest[0] if rest else ""
                issued = rest[1] / 1000 if len(rest) == 2 else signed.timestamp()
                return Principal(role, plan, subject, group, device, issued), signed.timestamp()
        raise ApiError(401, "invalid_token", "the token is not valid")

    def is_admin(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self._admin_token)

    def require_admin(self, token: str | None) -> None:
        if token is None:
            raise ApiError(401, "missing_token", "send the admin token as 'Authorization: Bearer'")
        if self.is_admin(token):
            return
        try:
            self.verify(token)
        except ApiError:
            raise ApiError(401, "invalid_token", "the admin token is not valid") from None
        raise ApiError(403, "admin_only", "this endpoint needs the admin token")

    def require_session(self, token: str | None) -> Principal:
        if token is None:
            raise ApiError(
                401, "missing_token", "send the session token as 'Authorization: Bearer'"
            )
        if self.is_admin(token):
            raise ApiError(403, "session_only", "this endpoint needs a session token, not admin's")
        return self.verify(token)


def _known_rest(rest: list[object]) -> bool:
    """The claims after the group: none, the device, or the device and the issued ms."""
    match rest:
        case [] | [str()]:
            return True
        case [str(), int() as issued] if not isinstance(issued, bool):
            return True
    return False


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "invalid_token", "the Authorization header must be 'Bearer <token>'")
    return token.strip()
