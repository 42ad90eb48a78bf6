"""Field readers for decoded JSON from the peer: each checks one type and names the bad path."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeVar

from .exceptions import RemoteProtocolError

V = TypeVar("V")


def frozen_map(mapping: Mapping[str, V]) -> Mapping[str, V]:
    """A read-only copy, so that a frozen message cannot change under its holder."""
    if isinstance(mapping, MappingProxyType):
        return mapping
    return MappingProxyType(dict(mapping))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def require_object(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise RemoteProtocolError(f"expected an object, got {type(value).__name__}", path=path)
    for key in value:
        if not isinstance(key, str):  # only possible for objects built in Python
            raise RemoteProtocolError(f"non-string key {key!r}", path=path)
    return value


def _get(m: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in m:
        raise RemoteProtocolError("missing", path=_join(path, key))
    return m[key]


def get_str(m: Mapping[str, Any], key: str, path: str) -> str:
    value = _get(m, key, path)
    if not isinstance(value, str):
        raise RemoteProtocolError("expected a string", path=_join(path, key))
    return value


# The largest integer a browser's numbers hold exactly (Number.MAX_SAFE_INTEGER); beyond it
# Python reads JSON integers exactly, but JavaScript and SQLite's 64-bit INTEGER do not.
MAX_SAFE_INTEGER = 2**53 - 1


def get_int(m: Mapping[str, Any], key: str, path: str, *, minimum: int | None = None) -> int:
    value = _get(m, key, path)
    # bool is an int in Python but not a number on the wire.
    if not isinstance(value, int) or isinstance(value, bool):
        raise RemoteProtocolError("expected an integer", path=_join(path, key))
    if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        raise RemoteProtocolError(
            f"expected an integer within ±{MAX_SAFE_INTEGER}", path=_join(path, key)
        )
    if minimum is not None and value < minimum:
        raise RemoteProtocolError(f"expected an integer >= {minimum}", path=_join(path, key))
    return value


def get_object(m: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    return require_object(_get(m, key, path), _join(path, key))


def get_optional_object(m: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any] | None:
    value = m.get(key)
    return None if value is None else require_object(value, _join(path, key))


def get_list(m: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = _get(m, key, path)
    if not isinstance(value, list):
        raise RemoteProtocolError("expected an array", path=_join(path, key))
    return value


def get_timestamp(m: Mapping[str, Any], key: str, path: str) -> str:
    """An ISO 8601 timestamp with an offset; kept as the string that was sent."""
    value = get_str(m, key, path)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RemoteProtocolError("not an ISO 8601 timestamp", path=_join(path, key)) from None
    if moment.tzinfo is None:
        raise RemoteProtocolError("timestamp without a UTC offset", path=_join(path, key))
    return value
