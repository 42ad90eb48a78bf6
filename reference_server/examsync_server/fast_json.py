"""JSON the server writes for itself or reads back from itself: acks, the answer cache, queued
payloads. orjson, 5-10× the standard library on these (bench/socket_saves.py spends it per save).

Not for what a checksum or a signature covers: canonical JSON is examsync.protocol's, standard
library only, so that client and server spell it byte for byte alike. Not for parsing a peer's
JSON either: examsync.protocol.decode_json is the strict one (duplicate keys, depth, NaN).
`canonical` is there to check checksums quickly, never to make one.
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
    """examsync.protocol.canonical_json's bytes for any decoded JSON without floats (orjson
    spells some floats, 1e-07 for one, otherwise): for verify_checksum's `quick`, which lets
    the definition decide whenever the two could differ."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def loads(data: str | bytes) -> Any:
    """JSON this server wrote (or validated before it queued it)."""
    return orjson.loads(data)
