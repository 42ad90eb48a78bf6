"""JSON the server writes for itself or reads back from itself: acks, the answer cache, queued
payloads. orjson: several times as fast as the standard library, and every save pays it.

Canonical JSON, what checksums and signatures cover, is examsync.protocol's (standard library
only, the one definition client and server share). `canonical` spells the same bytes for JSON
without floats (tests/server/test_fast_json.py): it encodes receipt payloads (strings and an
integer) and checks checksums quickly, leaving the definition to decide on a miss. Not for
parsing a peer's JSON: examsync.protocol.decode_json is the strict one (duplicates, depth, NaN).
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, non-ASCII unescaped (as json.dumps(..., ensure_ascii=False))."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        # orjson refuses integers beyond 64 bits (a peer may send one before validation
        # refuses it); the standard library writes them exactly.
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def canonical(obj: Any) -> bytes:
    """examsync.protocol.canonical_json's bytes for any JSON value without floats (orjson
    spells some floats otherwise: 1e-7 for 1e-07)."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def loads(data: str | bytes) -> Any:
    """JSON this server wrote (or validated before it queued it)."""
    return orjson.loads(data)
