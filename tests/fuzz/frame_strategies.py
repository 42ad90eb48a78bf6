"""Hypothesis strategies for the socket protocol's client frames (docs/protocol.md, "Socket
frames"): valid frames, the same with a field perturbed, wrong types, unknown types, huge and
deep JSON, binary and non-JSON frames, and frames just under and over the size limit.

Each strategy draws a `Wire`: what goes on the socket, and what the sender may expect of it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import hypothesis
from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import strategies as st

from examsync.messages import AnswerEntry, Behavior, Device, Metadata, SavePayload
from examsync.protocol import checksum, format_timestamp
from examsync_server.demo.sample import EXAM_CODE, PLAN_ID

QUIZ_CODES = ("Q001", "Q002", "Q003", "Q004", "Q005")


def deterministic(examples: int, seed: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """How every fuzzer here runs Hypothesis: a fixed seed, no example database, no deadline
    (a request may wait for a commit), no shrinking (findings are collected, not raised)."""

    def decorate(test: Callable[..., None]) -> Callable[..., None]:
        configured = settings(
            max_examples=examples,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,
        )(test)
        return hypothesis.seed(seed)(configured)

    return decorate


@dataclass(frozen=True)
class Wire:
    data: str | bytes  # str: a text frame; bytes: a binary frame
    save_id: str | None = None  # a save the server must answer, by this id

    @property
    def size(self) -> int:
        return len(
            self.data.encode("utf-8", "surrogatepass") if isinstance(self.data, str) else self.data
        )


# Lone surrogates are valid JSON escapes but no Unicode: the server must refuse them cleanly.
_text = st.text(max_size=30) | st.sampled_from(["\ud800", "\udfff", "", "\x00", "é" * 50])
# Times of any year from 1 to 9999 (year 130 once answered a capture with 500).
_times = st.datetimes(timezones=st.just(UTC)).map(
    lambda moment: moment.isoformat().replace("+00:00", "Z")
)
_leaves = (
    _times
    | st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
json_values = st.recursive(
    _leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


def save_payload(
    answers: dict[str, tuple[str, int]], candidate: str = "CAND202301"
) -> dict[str, Any]:
    """A payload the server takes (for the candidate the fuzz target logs in), edited now."""
    now = format_timestamp(time.time())
    entries = {code: AnswerEntry(value, version, now) for code, (value, version) in answers.items()}
    payload = SavePayload(
        exam_id=PLAN_ID,
        test_code=EXAM_CODE,
        user_id=candidate,
        timestamp=now,
        answers=entries,
        metadata=Metadata(
            device=Device("PC", "Chrome 120", "Windows 11", ""),
            behavior=Behavior(1000, len(entries), 0, ()),
        ),
        status="in_progress",
    )
    return payload.to_wire()


save_payloads = st.dictionaries(
    st.sampled_from(QUIZ_CODES),
    st.tuples(st.text(max_size=40), st.integers(1, 10**6)),
    min_size=1,
    max_size=len(QUIZ_CODES),
).map(save_payload)


_save_ids = st.text(min_size=1, max_size=100)

valid_frames = st.one_of(
    st.fixed_dictionaries({"type": st.just("ping"), "ts": st.integers(0, 2**53)}),
    st.fixed_dictionaries({"type": st.just("pong"), "ts": st.integers(0, 2**53)}),
    st.fixed_dictionaries(
        {
            "type": st.just("sync_state"),
            "pending": st.integers(0, 10**6),
            "oldestPendingAge": st.none() | st.floats(0, 10**6),
        }
    ),
    st.fixed_dictionaries({"type": st.just("save"), "id": _save_ids, "payload": save_payloads}),
)


@st.composite
def perturbed(draw: st.DrawFn, frame: dict[str, Any]) -> dict[str, Any]:
    """`frame` with one field replaced, removed or added; a save's payload perturbed inside,
    its checksum sometimes made right again so that the change reaches past the check."""
    frame = dict(frame)
    where = frame
    if "payload" in frame and draw(st.booleans()):
        where = frame["payload"] = dict(frame["payload"])
        if "answers" in where and draw(st.booleans()):
            answers = where["answers"] = dict(where["answers"])
            code = draw(st.sampled_from(sorted(answers)))
            where = answers[code] = dict(answers[code])
    action = draw(st.sampled_from(["replace", "remove", "add"]))
    key = draw(st.sampled_from(sorted(where))) if where else "x"
    if action == "replace":
        where[key] = draw(json_values)
    elif action == "remove":
        where.pop(key, None)
    else:
        where[draw(_text)] = draw(json_values)
    payload = frame.get("payload")
    if isinstance(payload, dict) and draw(st.booleans()):
        try:
            payload["checksum"] = checksum(payload)
        except Exception:  # what cannot be canonical cannot be sealed: sent as it is
            pass
    return frame


def _as_json(frame: Any, ascii_only: bool) -> str:
    return json.dumps(frame, ensure_ascii=ascii_only)


@st.composite
def json_frames(draw: st.DrawFn) -> Wire:
    """Valid, perturbed, unknown-typed and wrong-typed frames, as text or binary JSON."""
    frame: Any = draw(
        st.one_of(
            valid_frames,
            valid_frames.flatmap(perturbed),
            st.builds(
                lambda t, v: {"type": t, **v},
                _text | json_values,
                st.dictionaries(_text, json_values, max_size=3),
            ),
            json_values,  # arrays, numbers, strings, null at the top
        )
    )
    text = _as_json(frame, draw(st.booleans()))
    save_id = None
    if isinstance(frame, dict) and frame.get("type") == "save":
        rid = frame.get("id")
        save_id = rid if isinstance(rid, str) and 0 < len(rid) <= 100 else None
    if draw(st.booleans()):
        return Wire(text.encode("utf-8", "surrogatepass"), save_id)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate unescaped: only a binary frame carries it
        return Wire(text.encode("utf-8", "surrogatepass"), save_id)
    return Wire(text, save_id)


def _deep(depth: int, opener: str) -> str:
    if opener == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


malformed_frames = st.one_of(
    st.binary(max_size=200).map(Wire),
    st.text(max_size=200).map(Wire),
    st.builds(
        lambda d, o, t: Wire(f'{{"type":"{t}","x":{_deep(d, o)}}}'),
        st.integers(1, 20_000),
        st.sampled_from("[{"),
        st.sampled_from(["ping", "save", "sync_state", "nope"]),
    ),
    st.builds(lambda d, o: Wire(_deep(d, o)), st.integers(1, 20_000), st.sampled_from("[{")),
    st.sampled_from(
        [
            Wire('{"type":"ping","ts":NaN}'),
            Wire('{"type":"ping","ts":Infinity}'),
            Wire('{"type":"ping","type":"save"}'),
            # Not strict JSON (a duplicate key); a lenient read finds the id (the last one).
            Wire('{"type":"save","id":"dup","id":"dup2","payload":{}}', "dup2"),
            Wire('{"type":"save","id":"nan","payload":{"x":NaN}}', "nan"),
            Wire('{"type":"ping","ts":"\\ud800"}'),
            Wire('{"type":"ping","ts":' + "9" * 5000 + "}"),
            Wire('{"type":"save","id":"big","payload":{"n":' + "9" * 30 + "}}", "big"),
            Wire(b"\xff\xfe{}"),
            Wire(""),
            Wire(b""),
        ]
    ),
)


def sized_frames(limit: int) -> st.SearchStrategy[Wire]:
    """Frames of about `limit` bytes: up to the limit they are read, past it they close the
    socket (1009). Wide (a long string, a long list) rather than deep."""

    def build(delta: int, wide: bool, kind: str) -> Wire:
        size = max(limit + delta, 64)
        head = f'{{"type":"{kind}","id":"sized","ts":'
        if wide:
            body = "[" + ",".join(["1"] * ((size - len(head) - 3) // 2)) + "]"
        else:
            body = '"' + "x" * (size - len(head) - 3) + '"'
        text = head + body + "}"
        return Wire(text + " " * max(size - len(text), 0), "sized" if kind == "save" else None)

    return st.builds(
        build, st.integers(-64, 64), st.booleans(), st.sampled_from(["ping", "save", "other"])
    )


def client_frames(limit: int) -> st.SearchStrategy[Wire]:
    return st.one_of(json_frames(), malformed_frames, sized_frames(limit))


# A resume's `lastPosition`, now and then: Redis stream ids of the past, ids beyond what Redis
# takes, and text. (A future id waits 2 s for fan-out to catch up: kept to these two.)
last_positions = st.integers(0, 7).flatmap(
    lambda n: (
        st.none()
        if n
        else st.one_of(
            st.builds(lambda ms, seq: f"{ms}-{seq}", st.integers(0, 10**9), st.integers(0, 10**20)),
            st.sampled_from(["0-0", "18446744073709551615-0", "99999999999999999999-0"]),
            st.text(max_size=40),
        )
    )
)


# Save bodies for POST /api/v1/answers: payloads the server takes, perturbed ones, and raw
# bodies that are no (strict) JSON.
_save_frames = st.fixed_dictionaries({"type": st.just("save"), "payload": save_payloads})
save_bodies = st.one_of(
    save_payloads.map(lambda p: json.dumps(p).encode()),
    _save_frames.flatmap(perturbed).map(lambda f: json.dumps(f.get("payload")).encode()),
    malformed_frames.map(lambda w: w.data if isinstance(w.data, bytes) else w.data.encode()),
)


# Log batches for POST /api/v1/logs (docs/server.md, "Captures and logs"): batches the server
# takes, the same perturbed, and raw bodies that are no (strict) JSON.
_log_entries = st.fixed_dictionaries(
    {
        "at": st.just(None).map(lambda _: format_timestamp(time.time())) | _times,
        "level": st.sampled_from(["debug", "info", "warning", "error"]),
        "event": st.text(min_size=1, max_size=64),
        "data": st.dictionaries(st.text(max_size=10), json_values, max_size=3),
    }
)
_log_batches = st.fixed_dictionaries(
    {"batchId": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True),
     "entries": st.lists(_log_entries, min_size=1, max_size=5)}
)  # fmt: skip
log_bodies = st.one_of(
    _log_batches.map(lambda b: json.dumps(b).encode()),
    _log_batches.flatmap(perturbed).map(lambda b: json.dumps(b).encode()),
    malformed_frames.map(lambda w: w.data if isinstance(w.data, bytes) else w.data.encode()),
)
