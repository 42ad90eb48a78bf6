"""Canonical JSON, the checksum, timestamps, base64url (examsync.protocol)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from examsync.exceptions import ChecksumMismatch, LocalProtocolError, RemoteProtocolError
from examsync.protocol import (
    b64url_decode,
    b64url_encode,
    canonical_json,
    checksum,
    decode_json,
    format_timestamp,
    parse_timestamp,
    value_sha256,
    verify_checksum,
)

# A seed 002 §4.1 payload whose canonical form and SHA-256 were produced outside Python
# (the literal below, hashed with coreutils' sha256sum): the server must reproduce both.
KNOWN_PAYLOAD: dict[str, Any] = {
    "examId": "PLAN202401",
    "testCode": "EXAM202401",
    "userId": "CAND202301",
    "timestamp": "2024-01-01T09:00:02.000Z",
    "answers": {
        "Q001": {"value": "정답 ①", "version": 2, "updated": "2024-01-01T09:00:00.000Z"},
    },
    "metadata": {
        "device": {"type": "PC", "browser": "Chrome 120", "os": "Windows 11"},
        "behavior": {
            "focusTime": 1500,
            "editCount": 3,
            "keystrokes": 12,
            "navigation": [{"from": "Q001", "to": "Q002", "timestamp": "2024-01-01T09:00:01.000Z"}],
        },
    },
    "status": "in_progress",
}
KNOWN_CANONICAL = (
    '{"answers":{"Q001":{"updated":"2024-01-01T09:00:00.000Z","value":"정답 ①","version":2}},'
    '"examId":"PLAN202401","metadata":{"behavior":{"editCount":3,"focusTime":1500,'
    '"keystrokes":12,"navigation":[{"from":"Q001","timestamp":"2024-01-01T09:00:01.000Z",'
    '"to":"Q002"}]},"device":{"browser":"Chrome 120","os":"Windows 11","type":"PC"}},'
    '"status":"in_progress","testCode":"EXAM202401","timestamp":"2024-01-01T09:00:02.000Z",'
    '"userId":"CAND202301"}'
)
KNOWN_CHECKSUM = "fefc323818a5482b10af7dd03b673f5c93e6e128b36153aac3e334b95812d80f"


def test_known_answer_canonical_form() -> None:
    assert canonical_json(KNOWN_PAYLOAD) == KNOWN_CANONICAL.encode("utf-8")


def test_known_answer_checksum() -> None:
    assert checksum(KNOWN_PAYLOAD) == KNOWN_CHECKSUM
    # The checksum field itself, whatever it holds, is not part of what is hashed.
    assert checksum({**KNOWN_PAYLOAD, "checksum": "anything"}) == KNOWN_CHECKSUM


def test_checksum_is_sha256_of_canonical_json_without_checksum() -> None:
    payload = {"b": 1, "a": "가", "checksum": "x"}
    expected = hashlib.sha256('{"a":"가","b":1}'.encode()).hexdigest()
    assert checksum(payload) == expected


def test_canonical_json_sorts_nested_keys_and_keeps_unicode() -> None:
    assert canonical_json({"z": {"b": [1, {"d": 2, "c": 3}], "a": None}, "y": True}) == (
        b'{"y":true,"z":{"a":null,"b":[1,{"c":3,"d":2}]}}'
    )
    assert canonical_json({"k": 'é\u2028\n"\\'}) == '{"k":"é\u2028\\n\\"\\\\"}'.encode()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {1: "x"}, {"a": {2: 1}}, object()])
def test_canonical_json_refuses_what_has_no_single_spelling(bad: object) -> None:
    with pytest.raises(LocalProtocolError):
        canonical_json({"v": bad})


def test_verify_checksum() -> None:
    good = {**KNOWN_PAYLOAD, "checksum": KNOWN_CHECKSUM}
    verify_checksum(good)
    tampered = {**good, "status": "completed"}
    with pytest.raises(ChecksumMismatch) as info:
        verify_checksum(tampered)
    assert info.value.actual == KNOWN_CHECKSUM
    assert info.value.expected == checksum(tampered)
    with pytest.raises(ChecksumMismatch):
        verify_checksum(KNOWN_PAYLOAD)  # no checksum at all


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(), json_values, max_size=6))
def test_checksum_ignores_key_order_and_round_trips(payload: dict[str, Any]) -> None:
    reordered = dict(reversed(list(payload.items())))
    assert checksum(reordered) == checksum(payload)
    # What the peer parses back from canonical JSON hashes the same.
    assert checksum(decode_json(canonical_json(payload))) == checksum(payload)
    assert json.loads(canonical_json(payload)) == payload


def test_value_sha256() -> None:
    assert value_sha256("") == hashlib.sha256(b"").hexdigest()
    assert value_sha256("①") == hashlib.sha256("①".encode()).hexdigest()


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"\xff",
        '{"a": NaN}',
        '{"a": Infinity}',
        '{"a": -1e999}',  # valid JSON, but no finite number: canonical JSON could not write it
        '{"a": 1, "a": 2}',
        "[" * 100_000,
        '{"a": "x\\ud800"}',  # a lone surrogate: valid JSON, not Unicode
        '["\\udc00\\ud83d"]',  # a pair in the wrong order is two lone ones
    ],
)
def test_decode_json_refuses_malformed_input(raw: bytes | str) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_json(raw)


def test_decode_json_takes_escaped_surrogate_pairs() -> None:
    assert decode_json('"\\ud83d\\ude00 \\\\ud800"') == "\U0001f600 \\ud800"


def test_decode_json_bounds_nesting_outside_strings_only() -> None:
    deep = "[" * 33 + "]" * 33
    with pytest.raises(RemoteProtocolError, match="deeper"):
        decode_json(deep)
    assert decode_json("[" * 32 + "]" * 32) is not None
    # Brackets inside strings (escaped quotes included) are text, not nesting.
    text = json.dumps({"v": "[" * 100 + '\\"{' * 50})
    assert decode_json(text) == json.loads(text)


def test_timestamps() -> None:
    assert format_timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert format_timestamp(1704099600.1239) == "2024-01-01T09:00:00.123Z"
    assert parse_timestamp("2024-01-01T09:00:00.123Z") == pytest.approx(1704099600.123)
    assert parse_timestamp("2024-01-01T18:00:00+09:00") == 1704099600
    # Four digits of year, always (strftime's %Y writes year 130 as "130": no ISO 8601).
    early = "0130-04-16T07:29:36.500Z"
    assert format_timestamp(parse_timestamp(early)) == early
    with pytest.raises(RemoteProtocolError):
        parse_timestamp("2024-01-01T09:00:00")  # no offset: ambiguous
    with pytest.raises(RemoteProtocolError):
        parse_timestamp("yesterday")
    with pytest.raises(LocalProtocolError):
        format_timestamp(float("nan"))


@given(st.binary(max_size=100))
def test_b64url_round_trip(data: bytes) -> None:
    text = b64url_encode(data)
    assert "=" not in text and "+" not in text and "/" not in text
    assert b64url_decode(text) == data


@pytest.mark.parametrize("bad", ["a+b/", "abc!", "a", "é"])
def test_b64url_refuses_other_alphabets(bad: str) -> None:
    with pytest.raises(RemoteProtocolError):
        b64url_decode(bad)
