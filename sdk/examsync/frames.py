"""WebSocket frames between the SDK and the socket server (docs/protocol.md, "Socket frames").

Every frame is a text frame holding one JSON object with a string ``type``. :func:`parse_frame`
validates a received frame and returns one of the frame classes below; a frame of a type this
SDK does not know comes back as :class:`UnknownFrame` (reported, never fatal), so the server can
add types without breaking older clients. Malformed frames raise
:class:`~examsync.exceptions.RemoteProtocolError`.

Each frame's shape is written once, below its reader, for both ends: the ``*_message``
functions return a frame as a JSON-ready ``dict`` (the sender picks the encoding, and may carry
the frame inside another message: a poll's events, a stream entry); the ``*_frame`` functions
return the text to send. The reference server builds every frame it sends with them, including
the supervisors' events (``examinee_*``, ``alert``), which this SDK passes on as
:class:`UnknownFrame`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._validate import frozen_map, get_int, get_str, require_object
from .exceptions import RemoteProtocolError
from .protocol import decode_json

__all__ = [
    "AUTH",
    "EXAM_END_MESSAGE",
    "Auth",
    "ErrorFrame",
    "ExamEnded",
    "Frame",
    "Ping",
    "Pong",
    "ReloadState",
    "Resumed",
    "SaveAckFrame",
    "StageChanged",
    "DeviceActive",
    "UnknownFrame",
    "Welcome",
    "auth_frame",
    "auth_refused_message",
    "dead_letter_alert_message",
    "lockout_alert_message",
    "error_message",
    "exam_end_message",
    "examinee_connection_message",
    "examinee_lost_message",
    "parse_frame",
    "parse_poll",
    "ping_frame",
    "ping_message",
    "pong_frame",
    "pong_message",
    "position_of",
    "read_auth",
    "reload_state_message",
    "device_active_message",
    "resumed_message",
    "save_ack_frame",
    "save_frame",
    "stage_changed_message",
    "welcome_message",
]

AUTH = "auth"  # the client's first frame on a socket: the session token travels in it
SAVE_FEATURE = "save"  # in welcome.features: the server takes saves over the socket
EXAM_END_MESSAGE = "시험이 종료되었습니다."  # seed 001 §3.3, word for word


@dataclass(frozen=True, slots=True)
class Auth:
    """The client's first frame on a socket (docs/protocol.md, "Authentication"): its session
    token, kept out of the URL that browsers print and proxies log, and the position to resume
    after. The server reads it with :func:`read_auth`; clients send :func:`auth_frame`."""

    token: str
    last_position: str | None = None


@dataclass(frozen=True, slots=True)
class Welcome:
    """The server's greeting once the socket is authenticated."""

    socket_id: str
    role: str
    plan_id: str
    server_time: str
    features: frozenset[str] = frozenset()
    position: str | None = None  # where live delivery starts (absent on a resume)


@dataclass(frozen=True, slots=True)
class Ping:
    """The server checks that we are alive: answer with a pong echoing ``ts``."""

    ts: Any = None


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to one of our pings (``ts`` echoes what we sent)."""

    ts: Any = None


@dataclass(frozen=True, slots=True)
class ExamEnded:
    """The exam is over (seed 001 §3.3): the front-end stops taking answers."""

    plan_id: str
    message: str
    timestamp: str


@dataclass(frozen=True, slots=True)
class StageChanged:
    """The plan (or this candidate) moved to another stage; ``data`` is the whole frame."""

    plan_id: str
    timestamp: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", frozen_map(self.data))


@dataclass(frozen=True, slots=True)
class DeviceActive:
    """A device of this candidate signed in (docs/protocol.md, "Several devices"): from
    ``since`` (the sign-in's time on the server's clock) ``device_id`` is the active one. Under
    the ``single`` policy every other device is replaced: its saves of edits made from
    ``since`` on are refused; under ``merge`` the devices go on side by side."""

    plan_id: str
    candidate_id: str
    device_id: str
    since: str
    policy: str  # "single" or "merge"
    position: str | None = None


@dataclass(frozen=True, slots=True)
class Resumed:
    """A resume is complete: the missed events (``replayed`` of them) came before this; live
    delivery goes on from ``position``."""

    position: str
    replayed: int


@dataclass(frozen=True, slots=True)
class ReloadState:
    """The server cannot send what was missed (``reason``: ``position_too_old``,
    ``position_unknown``): state shown from events is stale and must be fetched afresh. Live
    delivery goes on from ``position``."""

    reason: str
    position: str | None


@dataclass(frozen=True, slots=True)
class SaveAckFrame:
    """The answer to a save sent over the socket: ``body`` is read as the HTTP 200 body."""

    request_id: str
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    """``{"type": "error", "error": {...}}``; with ``id`` and ``status`` when it answers a save.

    ``status`` is the HTTP status the same refusal would have had (0 when the server gave none).
    """

    request_id: str | None
    status: int
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class UnknownFrame:
    """A well-formed frame of a type this SDK does not handle (supervisor events, new types)."""

    type: str
    data: Mapping[str, Any]


Frame = (
    Welcome
    | Ping
    | Pong
    | ExamEnded
    | StageChanged
    | DeviceActive
    | Resumed
    | ReloadState
    | SaveAckFrame
    | ErrorFrame
    | UnknownFrame
)


def position_of(frame: Frame) -> str | None:
    """The event-stream position a frame carries (docs/protocol.md, "Positions and resume"):
    the highest one received is what a reconnect asks to resume after."""
    if isinstance(frame, Welcome | Resumed | ReloadState | DeviceActive):
        return frame.position
    if isinstance(frame, StageChanged | UnknownFrame):
        found = frame.data.get("position")
        return found if isinstance(found, str) and found else None
    return None


def _optional_str(m: Mapping[str, Any], key: str) -> str | None:
    value = m.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RemoteProtocolError("expected a string or null", path=key)
    return value


def _request_id(m: Mapping[str, Any]) -> str:
    value = m.get("id")
    # Ids are ours (we send strings); accept an integer too rather than drop a valid ack.
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise RemoteProtocolError("expected a request id", path="id")


def parse_frame(data: str | bytes) -> Frame:
    """The frame in ``data`` (one WebSocket message). Raises RemoteProtocolError if malformed."""
    return _frame_of(require_object(decode_json(data), ""))


def read_auth(data: str | bytes) -> Auth:
    """The auth frame in ``data``, the first frame of a socket's client. Raises
    RemoteProtocolError for anything else (the server refuses the socket then)."""
    m = require_object(decode_json(data), "")
    if m.get("type") != AUTH:
        raise RemoteProtocolError('the first frame must be {"type": "auth", "token": …}')
    token = m.get("token")
    if not isinstance(token, str) or not token:
        raise RemoteProtocolError("expected the session token, a non-empty string", path="token")
    return Auth(token, _optional_str(m, "lastPosition"))


def parse_poll(data: str | bytes) -> tuple[list[Frame], str]:
    """An answer of ``GET /api/v1/events`` (the HTTP fallback): its events as the frames a
    socket would have delivered — followed by :class:`ReloadState` when it says ``reload`` —
    and the position to poll from next. Raises RemoteProtocolError if malformed."""
    m = require_object(decode_json(data), "")
    events = m.get("events")
    if not isinstance(events, list):
        raise RemoteProtocolError("expected an array", path="events")
    position = get_str(m, "position", "")
    frames = [_frame_of(require_object(e, f"events[{i}]")) for i, e in enumerate(events)]
    reload = _optional_str(m, "reload")
    if reload is not None:
        frames.append(ReloadState(reload, position))
    return frames, position


def _frame_of(m: Mapping[str, Any]) -> Frame:
    kind = get_str(m, "type", "")
    if kind == "welcome":
        features = m.get("features", [])
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise RemoteProtocolError("expected an array of strings", path="features")
        return Welcome(
            socket_id=get_str(m, "socketId", ""),
            role=get_str(m, "role", ""),
            plan_id=str(m.get("planId", "")),
            server_time=str(m.get("serverTime", "")),
            features=frozenset(features),
            position=_optional_str(m, "position"),
        )
    if kind == "ping":
        return Ping(m.get("ts"))
    if kind == "pong":
        return Pong(m.get("ts"))
    if kind == "exam_end":
        return ExamEnded(
            plan_id=str(m.get("planId", "")),
            message=get_str(m, "message", ""),
            timestamp=get_str(m, "timestamp", ""),
        )
    if kind == "stage_changed":
        return StageChanged(
            plan_id=get_str(m, "planId", ""),
            timestamp=str(m.get("timestamp", "")),
            data=m,
        )
    if kind == "device_active":
        return DeviceActive(
            plan_id=get_str(m, "planId", ""),
            candidate_id=get_str(m, "candidateId", ""),
            device_id=get_str(m, "deviceId", ""),
            since=get_str(m, "since", ""),
            policy=get_str(m, "policy", ""),
            position=_optional_str(m, "position"),
        )
    if kind == "resumed":
        return Resumed(get_str(m, "position", ""), get_int(m, "replayed", "", minimum=0))
    if kind == "reload_state":
        return ReloadState(get_str(m, "reason", ""), _optional_str(m, "position"))
    if kind == "save_ack":
        return SaveAckFrame(_request_id(m), m)
    if kind == "error":
        require_object(m.get("error"), "error")
        request_id = _request_id(m) if "id" in m else None
        status = get_int(m, "status", "", minimum=0) if "status" in m else 0
        return ErrorFrame(request_id, status, m)
    return UnknownFrame(kind, frozen_map(m))


# --- building frames -----------------------------------------------------------------------------
# Key order is part of each shape: senders compare and log frames as text.


def welcome_message(
    socket_id: str,
    role: str,
    plan_id: str,
    server_time: str,
    *,
    ping_interval: float,
    ping_timeout: float,
    features: Sequence[str],
    position: str | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """:class:`Welcome`. ``position`` says where live delivery starts; a socket that resumes
    (``resume``) has none yet: its replay ends with ``resumed`` or ``reload_state``."""
    message: dict[str, Any] = {
        "type": "welcome",
        "socketId": socket_id,
        "role": role,
        "planId": plan_id,
        "serverTime": server_time,
        "pingInterval": ping_interval,
        "pingTimeout": ping_timeout,
        "features": list(features),
    }
    if not resume:
        message["position"] = position
    return message


def ping_message(ts: Any) -> dict[str, Any]:
    """:class:`Ping`, from either end; the answer echoes ``ts``."""
    return {"type": "ping", "ts": ts}


def pong_message(ts: Any, server_time: str | None = None) -> dict[str, Any]:
    """:class:`Pong`: echoes the ping's ``ts``; the server adds its time."""
    message: dict[str, Any] = {"type": "pong", "ts": ts}
    if server_time is not None:
        message["serverTime"] = server_time
    return message


def exam_end_message(plan_id: str, timestamp: str | None) -> dict[str, Any]:
    """:class:`ExamEnded`: seed 001 §3.3, plus the plan id so a client of several plans can
    tell them apart."""
    return {
        "type": "exam_end",
        "message": EXAM_END_MESSAGE,
        "timestamp": timestamp,
        "planId": plan_id,
    }


def stage_changed_message(
    plan_id: str, stage: Mapping[str, Any], timestamp: str, candidate_id: str | None = None
) -> dict[str, Any]:
    """:class:`StageChanged` of the plan, or of one candidate: ``stage`` is the stage clock's
    fields (stage id, deadline…), carried as they are."""
    message: dict[str, Any] = {
        "type": "stage_changed",
        "planId": plan_id,
        **stage,
        "timestamp": timestamp,
    }
    if candidate_id:
        message["candidateId"] = candidate_id
    return message


def device_active_message(
    plan_id: str,
    candidate_id: str,
    group_id: str | None,
    device_id: str,
    since: str,
    policy: str,
) -> dict[str, Any]:
    """:class:`DeviceActive`: the candidate's devices and their group's supervisors get it."""
    return {
        "type": "device_active",
        "planId": plan_id,
        "candidateId": candidate_id,
        "groupId": group_id,
        "deviceId": device_id,
        "since": since,
        "policy": policy,
    }


def resumed_message(position: str, replayed: int) -> dict[str, Any]:
    """:class:`Resumed`."""
    return {"type": "resumed", "position": position, "replayed": replayed}


def reload_state_message(reason: str, position: str | None) -> dict[str, Any]:
    """:class:`ReloadState`."""
    return {"type": "reload_state", "reason": reason, "position": position}


def error_message(
    body: Mapping[str, Any], request_id: str | None = None, status: int = 0
) -> dict[str, Any]:
    """:class:`ErrorFrame`: ``body`` is what HTTP would answer (``{"error": {...}}``); a refused
    save adds its ``id`` and the HTTP ``status`` of the same refusal."""
    message: dict[str, Any] = {"type": "error", **body}
    if request_id is not None:
        message["id"] = request_id
        message["status"] = status
    return message


def auth_refused_message(body: Mapping[str, Any], status: int) -> dict[str, Any]:
    """:class:`ErrorFrame` refusing an auth frame, sent before the server closes the socket:
    ``body`` and ``status`` are what an HTTP request with that token would have been answered."""
    return {"type": "error", **body, "status": status}


def save_ack_frame(request_id: str, ack: bytes) -> str:
    """:class:`SaveAckFrame` as text: ``{"type": "save_ack", "id": request_id, ...the ack's
    fields}``. ``ack`` is the ack's JSON object, spliced in as it was encoded (no decode: the
    server encodes a batch's acks once, off the socket's path)."""
    fields = ack.decode()[1:-1]
    head = '{"type":"save_ack","id":' + json.dumps(request_id)
    return head + ("," + fields if fields else "") + "}"


# The supervisors' events (seed 004 §10.3; the SDK passes them on as UnknownFrame).

_CONNECTED = "CONNECTED"  # seed 004 connection status; any other is a disconnection


def examinee_connection_message(
    plan_id: str,
    examinee_id: str,
    group_id: str | None,
    socket_id: str,
    status: str,
    timestamp: str,
    *,
    reason: str | None = None,
    client_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``examinee_connected`` / ``examinee_disconnected``, by ``status``."""
    message: dict[str, Any] = {
        "type": "examinee_connected" if status == _CONNECTED else "examinee_disconnected",
        "planId": plan_id,
        "examineeId": examinee_id,
        "groupId": group_id,
        "socketId": socket_id,
        "status": status,
        "timestamp": timestamp,
    }
    if reason is not None:
        message["reason"] = reason
    if client_info is not None:
        message["clientInfo"] = dict(client_info)
    return message


def examinee_lost_message(
    plan_id: str,
    examinee_id: str,
    group_id: str | None,
    timestamp: str,
    disconnected_at: str,
    lost_after: float,
) -> dict[str, Any]:
    """``examinee_lost``: disconnected since ``disconnected_at`` for ``lost_after`` seconds."""
    return {
        "type": "examinee_lost",
        "planId": plan_id,
        "examineeId": examinee_id,
        "groupId": group_id,
        "status": "LOST",
        "timestamp": timestamp,
        "disconnectedAt": disconnected_at,
        "lostAfter": lost_after,
    }


def dead_letter_alert_message(
    plan_id: str, candidate_id: str, stream: str, message_id: str, error: str, timestamp: str
) -> dict[str, Any]:
    """``alert`` of kind ``dead_letter``: a message of the candidate's failed for good."""
    return {
        "type": "alert",
        "planId": plan_id,
        "candidateId": candidate_id,
        "stream": stream,
        "messageId": message_id,
        "error": error,
        "timestamp": timestamp,
        "kind": "dead_letter",
    }


def lockout_alert_message(
    kind: str,
    plan_id: str,
    candidate_id: str,
    group_id: str | None,
    locked_until: str,
    timestamp: str,
) -> dict[str, Any]:
    """``alert`` of kind ``locked_out`` (failed sign-ins locked the candidate out until
    ``lockedUntil``) or ``lockout_lifted`` (a supervisor or the admin lifted it)."""
    return {
        "type": "alert",
        "planId": plan_id,
        "candidateId": candidate_id,
        "groupId": group_id,
        "lockedUntil": locked_until,
        "timestamp": timestamp,
        "kind": kind,
    }


# --- what the SDK sends ---------------------------------------------------------------------------


def auth_frame(token: str, last_position: str | None = None) -> str:
    """:class:`Auth` as text, the first frame a client sends on a new socket (``last_position``:
    resume after it)."""
    message = {"type": AUTH, "token": token}
    if last_position is not None:
        message["lastPosition"] = last_position
    return json.dumps(message)


def ping_frame(ts: Any) -> str:
    """Our heartbeat; the server answers ``{"type": "pong", "ts": ts}``."""
    return json.dumps(ping_message(ts))


def pong_frame(ts: Any) -> str:
    """The answer to the server's ping."""
    return json.dumps(pong_message(ts))


def save_frame(request_id: str, body: bytes) -> str:
    """A save over the socket: ``body`` is the canonical JSON the HTTP save would carry.

    Spliced in as it is (no re-encoding): the payload's checksum is over its content, and the
    server reads the same object either way.
    """
    return (
        '{"type":"save","id":' + json.dumps(request_id) + ',"payload":' + body.decode("utf-8") + "}"
    )
