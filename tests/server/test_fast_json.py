"""fast_json (orjson) against the standard library it stands in for: the same bytes for the
JSON the server writes, and checksums that verify exactly as examsync.protocol defines them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from examsync.exceptions import ChecksumMismatch
from examsync.protocol import canonical_json, checksum, verify_checksum
from examsync_server.base import fast_json

# Decoded JSON without floats: what a save is made of. Text covers every code point but the
# surrogates (decode_json refuses lone ones).
TEXT = st.text(st.characters(exclude_categories=["Cs"]))
SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | TEXT
JSONISH = st.recursive(
    SCALARS, lambda inner: st.lists(inner) | st.dictionaries(TEXT, inner), max_leaves=30
)


@given(JSONISH)
def test_canonical_is_the_protocols_canonical_json_without_floats(value: Any) -> None:
    assert fast_json.canonical(value) == canonical_json(value)


@given(JSONISH | st.floats(allow_nan=False, allow_infinity=False))
def test_dumps_is_compact_unescaped_json(value: Any) -> None:
    assert json.loads(fast_json.dumps(value)) == value
    if not isinstance(value, float):
        assert fast_json.dumps(value) == json.dumps(
            value, ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")


def test_dumps_writes_integers_beyond_64_bits_exactly() -> None:
    assert fast_json.dumps({"v": 2**70}) == b'{"v":1180591620717411303424}'


@pytest.mark.parametrize("value", [1e-07, 2.5e-05, 10**30, "가"])
def test_quick_checksums_decide_as_the_definition(value: Any) -> None:
    """Where orjson spells a float otherwise (1e-7) or cannot encode (10**30), the protocol's
    own canonical JSON decides: a good checksum passes, a bad one names the defined digest."""
    payload = {"a": [value], "b": 1}
    good = {**payload, "checksum": checksum(payload)}
    verify_checksum(good, quick=fast_json.canonical)
    with pytest.raises(ChecksumMismatch) as raised:
        verify_checksum({**good, "b": 2}, quick=fast_json.canonical)
    assert raised.value.expected == checksum({**payload, "b": 2})
