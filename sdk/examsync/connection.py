"""The socket connection state machine: heartbeat, reconnects with backoff, HTTP fallback.

Sans-I/O like the engine: a driver (the CPython or Pyodide adapter) opens and closes the real
socket when told to, feeds what happens (``connection_made``, ``connect_failed``,
``receive_frame``, ``connection_lost``) with ``now`` from one clock (a monotonic one is best:
only differences matter), and does what :meth:`Connection.actions_to_do` returns. The driver
loop::

    conn.start(now)
    loop:
        for action in conn.actions_to_do():  Connect → open a socket (then connection_made /
                                             connect_failed); Send → send the frame; Drop →
                                             close the socket (no connection_lost needed);
                                             Poll → GET /api/v1/events (then poll_answered /
                                             poll_failed)
        on a frame: frame = conn.receive_frame(data, now) → route save acks, events
        sleep until conn.next_deadline(), then conn.tick(now)
        conn.save_channel tells where saves go (None: hold them)

The states (every move is in ``_TRANSITIONS``)::

    IDLE --start--> CONNECTING --made--> OPEN --lost (closed, heartbeat timeout)--+
                      ^     |                                                    |
                      |   failed                                                 v
                      +-------------------retry due (backoff) <------------- WAITING
                                                                  (any) --close--> CLOSED

Heartbeat: any frame from the server proves it alive. After ``ping_interval`` without one we
send a ping; if nothing arrives within ``ping_timeout`` more, the connection is dead. So a dead
connection is noticed at most ``ping_interval + ping_timeout`` after the last sign of life.

Resume: the machine keeps the ``position`` of the last event received (welcome, events,
``resumed``, ``reload_state``) and puts it in every ``Connect``, so the driver reconnects with
``&lastPosition=`` and the server sends what was missed. The driver routes ``Resumed`` and
``ReloadState`` frames; on ``ReloadState`` it fetches afresh what events would have updated.

Fallback: after ``max_attempts`` failures in a row (a lost connection counts as one) the
machine is in *fallback*: saves go over HTTP while the socket keeps being retried in the
background, the backoff capped, and events are polled over HTTP every ``poll_interval``
(``Poll`` actions; the driver feeds the body to ``poll_answered`` and routes the frames it
returns like a socket's), which also keeps the examinee counted as connected. Before that,
saves are held (``save_channel`` is None), because an outage that a quick reconnect heals is
the common case.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from .backoff import Backoff
from .exceptions import LocalProtocolError
from .frames import (
    SAVE_FEATURE,
    Frame,
    Ping,
    Welcome,
    parse_frame,
    parse_poll,
    ping_frame,
    pong_frame,
    position_of,
)

__all__ = [
    "Action",
    "Connect",
    "Connection",
    "ConnectionChanged",
    "ConnectionConfig",
    "ConnectionState",
    "Drop",
    "Poll",
    "SaveChannel",
    "Send",
]


class ConnectionState(Enum):
    IDLE = "idle"  # not started
    CONNECTING = "connecting"  # an attempt is under way
    OPEN = "open"  # the socket is up and the heartbeat runs
    WAITING = "waiting"  # between attempts (backoff)
    CLOSED = "closed"  # closed for good


class SaveChannel(Enum):
    SOCKET = "socket"
    HTTP = "http"


class _Trigger(Enum):
    START = "start"
    MADE = "made"
    FAILED = "failed"
    LOST = "lost"
    RETRY_DUE = "retry due"
    CLOSE = "close"


_TRANSITIONS: Mapping[tuple[ConnectionState, _Trigger], ConnectionState] = {
    (ConnectionState.IDLE, _Trigger.START): ConnectionState.CONNECTING,
    (ConnectionState.CONNECTING, _Trigger.MADE): ConnectionState.OPEN,
    (ConnectionState.CONNECTING, _Trigger.FAILED): ConnectionState.WAITING,
    (ConnectionState.OPEN, _Trigger.LOST): ConnectionState.WAITING,
    (ConnectionState.WAITING, _Trigger.RETRY_DUE): ConnectionState.CONNECTING,
    **{(state, _Trigger.CLOSE): ConnectionState.CLOSED for state in ConnectionState},
}


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    ping_interval: float = 10.0  # silence from the server before we ping
    ping_timeout: float = 5.0  # how long that ping may go unanswered
    max_attempts: int = 5  # failures in a row before saves fall back to HTTP
    backoff: Backoff = field(default_factory=lambda: Backoff(base=0.5, cap=30.0))
    socket_saves: bool = True  # send saves over the socket when the server offers it
    # In fallback, events are polled over HTTP this often; the server counts the poller as
    # connected while polls come within its ping_interval + ping_timeout (15 s by default).
    poll_interval: float = 5.0

    def __post_init__(self) -> None:
        if not (
            self.ping_interval > 0
            and self.ping_timeout > 0
            and self.max_attempts >= 1
            and self.poll_interval > 0
        ):
            raise ValueError(f"invalid connection config {self!r}")


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a socket to the session's ``socketUrl`` (attempt number ``attempt``), with
    ``&lastPosition=<last_position>`` when it is set: the server then sends the events missed
    since, or ``reload_state``."""

    attempt: int
    last_position: str | None = None


@dataclass(frozen=True, slots=True)
class Send:
    """Send this text frame on the open socket."""

    frame: str


@dataclass(frozen=True, slots=True)
class Drop:
    """Close the socket now (the machine already counts it as gone)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Poll:
    """Fetch the events after ``last_position`` over HTTP (``GET /api/v1/events?after=``), then
    call ``poll_answered`` with the body (or ``poll_failed``)."""

    last_position: str | None


Action = Connect | Send | Drop | Poll


@dataclass(frozen=True, slots=True)
class ConnectionChanged:
    """Emitted when the state, the fallback flag or the save channel changes."""

    state: ConnectionState
    failures: int  # failed attempts in a row
    fallback: bool  # attempts exhausted: saves go over HTTP, the socket is retried behind
    save_channel: SaveChannel | None  # None: saves wait
    reason: str | None = None  # why it changed, for logs and the screen


class Connection:
    """Heartbeat, reconnect and fallback decisions for one socket (see the module docstring)."""

    def __init__(self, config: ConnectionConfig, rng: Callable[[], float]) -> None:
        """``rng`` returns floats uniform in ``[0, 1)`` (``random.random``) for backoff jitter."""
        self.config = config
        self._rng = rng
        self._state = ConnectionState.IDLE
        self._failures = 0
        self._retry_at: float | None = None
        self._last_rx = 0.0
        self._pinged = False  # a ping is out for the current silence
        self._welcome: Welcome | None = None
        self._position: str | None = None  # of the last event received, on any socket
        self._poll_at: float | None = None  # in fallback: when the next poll is due
        self._polling = False  # a poll is out
        self._actions: list[Action] = []
        self._events: list[ConnectionChanged] = []
        self._reported: tuple[object, ...] = (self._state, False, None)

    # --- reading state ---------------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def failures(self) -> int:
        return self._failures

    @property
    def welcome(self) -> Welcome | None:
        """The server's greeting on the current socket (None before it arrives)."""
        return self._welcome

    @property
    def fallback(self) -> bool:
        return self._state is not ConnectionState.OPEN and (
            self._failures >= self.config.max_attempts
        )

    @property
    def save_channel(self) -> SaveChannel | None:
        """Where saves go now: the socket, HTTP, or nowhere yet (hold them)."""
        if self._state is ConnectionState.OPEN:
            offered = self._welcome is not None and SAVE_FEATURE in self._welcome.features
            return SaveChannel.SOCKET if offered and self.config.socket_saves else SaveChannel.HTTP
        if self._state is not ConnectionState.CLOSED and self.fallback:
            return SaveChannel.HTTP
        return None

    @property
    def last_position(self) -> str | None:
        """The position of the last event received (kept across sockets): a reconnect resumes
        after it."""
        return self._position

    def next_deadline(self) -> float | None:
        """When :meth:`tick` must be called next (None: only an input can change things)."""
        if self._state is ConnectionState.OPEN:
            dead_at = self._last_rx + self.config.ping_interval + self.config.ping_timeout
            return dead_at if self._pinged else self._last_rx + self.config.ping_interval
        due = [t for t in (self._retry_at, self._poll_due()) if t is not None]
        return min(due) if due else None

    def actions_to_do(self) -> list[Action]:
        """What the driver must do, oldest first. Call after every other method."""
        actions, self._actions = self._actions, []
        return actions

    def events_received(self) -> list[ConnectionChanged]:
        events, self._events = self._events, []
        return events

    # --- inputs ----------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Make the first attempt."""
        if self._state is not ConnectionState.IDLE:
            raise LocalProtocolError(f"start() in state {self._state.value}")
        self._fire(_Trigger.START)
        self._actions.append(Connect(1, self._position))
        self._report("starting")

    def connection_made(self, now: float) -> None:
        """The socket opened (handshake accepted): the heartbeat starts now."""
        if self._state is not ConnectionState.CONNECTING:
            raise LocalProtocolError(f"connection_made() in state {self._state.value}")
        self._fire(_Trigger.MADE)
        self._failures = 0
        self._retry_at = None
        self._poll_at = None  # the socket carries the events again
        self._last_rx = now
        self._pinged = False
        self._welcome = None
        self._report("connected")

    def connect_failed(self, reason: str, now: float, retry_after: float | None = None) -> None:
        """The attempt failed (refused, timed out, handshake refused). ``retry_after``: the
        server asked for that many seconds' wait (a reconnect storm); the next attempt comes
        no sooner, plus the backoff's jitter, so the refused clients do not return together."""
        if self._state is ConnectionState.CONNECTING:
            self._fire(_Trigger.FAILED)
            self._schedule_retry(now, retry_after)
            self._report(reason)

    def connection_lost(self, reason: str, now: float) -> None:
        """The open socket closed or errored (not after a Drop: that is already counted)."""
        if self._state is ConnectionState.OPEN:
            self._lose(reason, now)
        elif self._state is ConnectionState.CONNECTING:
            self.connect_failed(reason, now)

    def receive_frame(self, data: str | bytes, now: float) -> Frame:
        """A frame arrived; return it parsed for the driver to route.

        Any frame, even a malformed one, proves the peer alive. The server's ping is answered
        here; its welcome is kept. Raises RemoteProtocolError for a malformed frame.
        """
        if self._state is ConnectionState.OPEN:
            self._last_rx = now
            self._pinged = False
        frame = parse_frame(data)
        if self._state is not ConnectionState.OPEN:
            return frame  # a late frame of a socket already given up: nothing to answer
        # Frames arrive in stream order, so the latest position is the highest.
        self._position = position_of(frame) or self._position
        if isinstance(frame, Ping):
            self._actions.append(Send(pong_frame(frame.ts)))
        elif isinstance(frame, Welcome):
            self._welcome = frame
            self._report("welcomed")
        return frame

    def poll_answered(self, data: str | bytes, now: float) -> list[Frame]:
        """The body of a :class:`Poll`: the frames to route, as if the socket had sent them
        (none once a socket is open again: its resume covers them). Raises
        RemoteProtocolError for a malformed body."""
        self._polling = False
        self._poll_at = now + self.config.poll_interval
        frames, position = parse_poll(data)
        if self._state in (ConnectionState.OPEN, ConnectionState.CLOSED):
            return []
        self._position = position
        return frames

    def poll_failed(self, reason: str, now: float) -> None:
        """A :class:`Poll` got no answer (``reason`` for logs): the next one is due later."""
        self._polling = False
        self._poll_at = now + self.config.poll_interval

    def tick(self, now: float) -> None:
        """Let time pass: ping a silent server, give up on a dead one, retry or poll when due."""
        poll_at = self._poll_due()
        if poll_at is not None and now >= poll_at:
            self._polling = True
            self._actions.append(Poll(self._position))
        if self._state is ConnectionState.OPEN:
            silent_for = now - self._last_rx
            if silent_for >= self.config.ping_interval + self.config.ping_timeout:
                self._actions.append(Drop("heartbeat timeout"))
                self._lose("heartbeat timeout", now)
            elif silent_for >= self.config.ping_interval and not self._pinged:
                self._pinged = True
                self._actions.append(Send(ping_frame(round(now * 1000))))
        elif self._state is ConnectionState.WAITING:
            if self._retry_at is None or now >= self._retry_at:
                self._retry_at = None
                self._fire(_Trigger.RETRY_DUE)
                self._actions.append(Connect(self._failures + 1, self._position))
                self._report("retrying")

    def retry_now(self, now: float) -> None:
        """Skip the rest of a backoff wait (the network came back, the user asked)."""
        if self._state is ConnectionState.WAITING:
            self._retry_at = now
            self.tick(now)

    def close(self, now: float) -> None:
        """Close for good; an open or opening socket is dropped."""
        if self._state in (ConnectionState.OPEN, ConnectionState.CONNECTING):
            self._actions.append(Drop("closing"))
        self._fire(_Trigger.CLOSE)
        self._retry_at = None
        self._report("closed")

    # --- internals -------------------------------------------------------------------------------

    def _fire(self, trigger: _Trigger) -> None:
        self._state = _TRANSITIONS.get((self._state, trigger), self._state)

    def _lose(self, reason: str, now: float) -> None:
        self._fire(_Trigger.LOST)
        self._welcome = None
        self._schedule_retry(now)
        self._report(reason)

    def _schedule_retry(self, now: float, retry_after: float | None = None) -> None:
        self._failures += 1
        delay = self.config.backoff.delay(self._failures, self._rng())
        self._retry_at = now + (retry_after or 0.0) + delay
        if self.fallback and self._poll_at is None:
            self._poll_at = now  # fallback begins: events come over HTTP, from now

    def _poll_due(self) -> float | None:
        """When the next poll is due (None: no polling, or one is out)."""
        if not self.fallback or self._polling or self._state is ConnectionState.CLOSED:
            return None
        return self._poll_at

    def _report(self, reason: str) -> None:
        key = (self._state, self.fallback, self.save_channel)
        if key != self._reported:
            self._reported = key
            self._events.append(
                ConnectionChanged(
                    self._state, self._failures, self.fallback, self.save_channel, reason
                )
            )
