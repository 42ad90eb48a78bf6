"""The wire encoding (DESIGN §4): canonical JSON, the checksum, timestamps, base64url.

This is the part of the contract both sides must compute byte for byte, shared by the SDK and
the reference server: standard library only, no I/O. The messages built on it are in
:mod:`examsync.messages`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from .exceptions import ChecksumMismatch, LocalProtocolError, RemoteProtocolError

__all__ = [
    "b64url_decode",
    "b64url_encode",
    "canonical_json",
    "checksum",
    "decode_json",
    "finite_float",
    "format_timestamp",
    "parse_timestamp",
    "reject_constant",
    "value_sha256",
    "verify_checksum",
]


# --- canonical JSON and checksum (the one definition both sides use) ---------------------------


def canonical_json(obj: Any) -> bytes:
    """``obj`` as canonical JSON: UTF-8, keys sorted, separators ``,`` ``:``, no ASCII escaping.

    NaN and infinities are refused (JSON has no spelling for them); so are non-string keys,
    which ``json`` would otherwise silently turn into strings.
    """
    _check_keys(obj)
    try:
        text = json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(f"not canonical-JSON serialisable: {exc}") from exc
    return text.encode("utf-8")


def _check_keys(obj: Any) -> None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise LocalProtocolError(f"object key {key!r} is not a string")
            _check_keys(value)
    elif isinstance(obj, list | tuple):
        for item in obj:
            _check_keys(item)


def checksum(payload: Mapping[str, Any]) -> str:
    """SHA-256, lowercase hex, of the canonical JSON of ``payload`` without its ``checksum``."""
    return _sha256_hex(canonical_json(_without_checksum(payload)))


def _without_checksum(payload: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in payload.items() if key != "checksum"}


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# Another encoder of canonical JSON (the server's, compiled): the same bytes for nearly all
# input; it may raise TypeError or ValueError for what it cannot encode.
CanonicalEncoder = Callable[[Any], bytes]


def verify_checksum(payload: Mapping[str, Any], *, quick: CanonicalEncoder | None = None) -> None:
    """Raise :class:`ChecksumMismatch` unless ``payload["checksum"]`` matches its content.

    ``quick`` is tried first; only when its digest does not match does :func:`canonical_json`,
    the definition, decide. (A digest over a faithful spelling of the same content proves it
    intact either way; they can differ only in how some floats are spelled.)
    """
    actual = payload.get("checksum")
    body = _without_checksum(payload)
    if quick is not None:
        with contextlib.suppress(TypeError, ValueError):
            if _sha256_hex(quick(body)) == actual:
                return
    expected = _sha256_hex(canonical_json(body))
    if actual != expected:
        raise ChecksumMismatch(expected=expected, actual=actual)


def value_sha256(value: str) -> str:
    """The ``valueSha256`` a receipt carries for an answer value: SHA-256 hex of its UTF-8."""
    return _sha256_hex(value.encode("utf-8"))


def reject_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (RFC 8259); Python's parser would take them (a
    `parse_constant` for json)."""
    raise ValueError(f"{name} is not JSON")


def finite_float(text: str) -> float:
    """A JSON number as a float, refused when out of range: `1e999` is valid JSON that Python
    would read as infinity, which canonical JSON cannot write (a `parse_float` for json)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


# Our messages nest 6 deep. The bound matters in Pyodide: there, deep nesting overflows the
# JavaScript stack and kills the interpreter outright instead of raising RecursionError.
MAX_JSON_DEPTH = 32
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKET = re.compile(r"[\[\]{}]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _too_deep(text: str) -> bool:
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return False  # the common case, decided at C speed: too few openers to nest that deep
    depth = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub('""', text)):
        depth += 1 if bracket in "[{" else -1
        if depth > MAX_JSON_DEPTH:
            return True
    return False


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)  # at C speed; a key seen twice makes it shorter
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return result


# One decoder for every call: json.loads with hooks builds a new decoder each time.
_STRICT = json.JSONDecoder(
    object_pairs_hook=_no_duplicates, parse_constant=reject_constant, parse_float=finite_float
)


def decode_json(data: bytes | str) -> Any:
    """Parse JSON from the peer strictly (UTF-8, no NaN/Infinity, no duplicate keys, no lone
    surrogates).

    Nesting deeper than :data:`MAX_JSON_DEPTH` is refused before parsing.
    """

    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        if _too_deep(text):
            raise ValueError(f"nested deeper than {MAX_JSON_DEPTH}")
        decoded = _STRICT.decode(text)
        if _SURROGATE_ESCAPE.search(text):
            # `"\ud800"` is valid JSON for a lone surrogate: not Unicode, it has no UTF-8
            # spelling, so it could never be stored, hashed or checksummed. Escaped pairs are fine.
            json.dumps(decoded, ensure_ascii=False).encode("utf-8")
        return decoded
    except (UnicodeError, ValueError, RecursionError) as exc:
        raise RemoteProtocolError(f"malformed JSON: {exc}") from exc


# --- timestamps and base64url --------------------------------------------------------------------


def format_timestamp(epoch_seconds: float) -> str:
    """ISO 8601 UTC with milliseconds, as all wire timestamps: ``2024-01-01T09:00:00.000Z``."""
    if not math.isfinite(epoch_seconds):
        raise LocalProtocolError(f"not a time: {epoch_seconds!r}")
    moment = datetime.fromtimestamp(epoch_seconds, tz=UTC).replace(tzinfo=None)
    # isoformat, not strftime: %Y leaves years before 1000 unpadded ("130-04-16"), no ISO 8601.
    return moment.isoformat(timespec="milliseconds") + "Z"


def parse_timestamp(text: str) -> float:
    """Seconds since the epoch from an ISO 8601 timestamp with an explicit offset (or ``Z``)."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError) as exc:
        raise RemoteProtocolError(f"not an ISO 8601 timestamp: {text!r}") from exc
    if moment.tzinfo is None:
        raise RemoteProtocolError(f"timestamp without a UTC offset: {text!r}")
    return moment.timestamp()


def b64url_encode(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2), as receipt signatures are sent."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url_encode`; padding is optional, other alphabets are refused."""
    if not text.isascii() or any(c in text for c in "+/"):
        raise RemoteProtocolError(f"not base64url: {text!r}")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise RemoteProtocolError(f"not base64url: {text!r}") from exc
