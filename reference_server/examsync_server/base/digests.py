"""Uploads declare their SHA-256 in `X-Content-SHA256`; the server checks it before storing."""

from __future__ import annotations

import hashlib

from ..errors import ApiError

_HEX = frozenset("0123456789abcdef")


def verified_sha256(data: bytes, declared: str | None, what: str) -> str:
    """The body's SHA-256 (hex) when it is the declared one; a clear error otherwise."""
    if declared is None:
        raise ApiError(
            400,
            "missing_checksum",
            f"send the {what}'s SHA-256 (hex) in the X-Content-SHA256 header",
        )
    expected = declared.strip().lower()
    if len(expected) != 64 or not set(expected) <= _HEX:
        raise ApiError(
            400, "invalid_checksum_header", "X-Content-SHA256 must be 64 hexadecimal characters"
        )
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ApiError(
            422,
            "checksum_mismatch",
            f"the {what} does not match X-Content-SHA256",
            {"expected": expected, "actual": actual},
        )
    return actual
