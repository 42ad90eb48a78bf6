"""The socket connection machine: heartbeat, reconnects, fallback (examsync.connection)."""

from __future__ import annotations

import json

import pytest

from examsync.backoff import Backoff
from examsync.connection import (
    Connect,
    Connection,
    ConnectionChanged,
    ConnectionConfig,
    ConnectionState,
    Drop,
    Poll,
    SaveChannel,
    Send,
)
from examsync.exceptions import LocalProtocolError, RemoteProtocolError
from examsync.frames import ExamEnded, Pong, ReloadState, StageChanged

WELCOME = json.dumps({"type": "welcome", "socketId": "S1", "role": "candidate", "planId": "P"})
WELCOME_SAVES = json.dumps(
    {"type": "welcome", "socketId": "S1", "role": "candidate", "features": ["save"]}
)


def make(rand: float = 0.5, **config: object) -> Connection:
    cfg = ConnectionConfig(
        ping_interval=10, ping_timeout=5, max_attempts=3, backoff=Backoff(base=1, cap=8), **config
    )
    return Connection(cfg, lambda: rand)


def opened(conn: Connection, now: float = 0.0) -> Connection:
    conn.start(now)
    assert conn.actions_to_do() == [Connect(1)]
    conn.connection_made(now)
    return conn


def test_start_connects_and_open_uses_http_until_the_server_offers_socket_saves() -> None:
    conn = opened(make())
    assert conn.state is ConnectionState.OPEN
    assert conn.save_channel is SaveChannel.HTTP
    conn.receive_frame(WELCOME_SAVES, 1.0)
    assert conn.save_channel is SaveChannel.SOCKET
    assert conn.welcome is not None and conn.welcome.socket_id == "S1"
    events = conn.events_received()
    assert [e.state for e in events] == [
        ConnectionState.CONNECTING,
        ConnectionState.OPEN,
        ConnectionState.OPEN,
    ]
    assert events[-1].save_channel is SaveChannel.SOCKET


def test_socket_saves_can_be_turned_off() -> None:
    conn = opened(make(socket_saves=False))
    conn.receive_frame(WELCOME_SAVES, 1.0)
    assert conn.save_channel is SaveChannel.HTTP


def test_a_silent_server_is_pinged_then_dropped_within_interval_plus_timeout() -> None:
    conn = opened(make())
    assert conn.next_deadline() == 10.0
    conn.tick(9.9)
    assert conn.actions_to_do() == []
    conn.tick(10.0)
    [ping] = conn.actions_to_do()
    assert isinstance(ping, Send) and json.loads(ping.frame) == {"type": "ping", "ts": 10_000}
    assert conn.next_deadline() == 15.0
    conn.tick(14.9)
    assert conn.state is ConnectionState.OPEN and conn.actions_to_do() == []
    conn.tick(15.0)
    assert conn.actions_to_do() == [Drop("heartbeat timeout")]
    assert conn.state is ConnectionState.WAITING
    assert conn.save_channel is None  # held: a quick reconnect is the common case


def test_any_frame_keeps_the_connection_alive() -> None:
    conn = opened(make())
    conn.tick(10.0)
    conn.actions_to_do()
    conn.receive_frame(json.dumps({"type": "pong", "ts": 10_000}), 12.0)
    assert conn.next_deadline() == 22.0
    conn.tick(21.0)
    assert conn.state is ConnectionState.OPEN
    # Even a malformed frame proves the peer alive (and is reported as an error).
    with pytest.raises(RemoteProtocolError):
        conn.receive_frame("not json", 21.5)
    assert conn.next_deadline() == 31.5


def test_the_servers_ping_is_answered_with_its_ts() -> None:
    conn = opened(make())
    conn.receive_frame(json.dumps({"type": "ping", "ts": 123}), 1.0)
    [pong] = conn.actions_to_do()
    assert isinstance(pong, Send) and json.loads(pong.frame) == {"type": "pong", "ts": 123}


def test_frames_are_returned_for_the_driver_to_route() -> None:
    conn = opened(make())
    frame = conn.receive_frame(
        json.dumps({"type": "exam_end", "message": "끝", "timestamp": "t", "planId": "P"}), 1.0
    )
    assert frame == ExamEnded("P", "끝", "t")
    assert conn.receive_frame(json.dumps({"type": "pong", "ts": 1}), 1.0) == Pong(1)


def test_reconnects_with_backoff_then_falls_back_to_http_and_keeps_retrying() -> None:
    conn = opened(make(rand=0.5))
    conn.connection_lost("closed by peer", 1.0)
    assert (conn.state, conn.failures, conn.next_deadline()) == (ConnectionState.WAITING, 1, 1.5)
    conn.tick(1.5)
    assert conn.actions_to_do() == [Connect(2)]
    conn.connect_failed("refused", 2.0)
    assert conn.next_deadline() == 3.0  # 0.5 * min(8, 2)
    conn.tick(3.0)
    assert conn.actions_to_do() == [Connect(3)]
    conn.connect_failed("refused", 3.0)
    assert conn.fallback and conn.save_channel is SaveChannel.HTTP
    assert conn.next_deadline() == 3.0  # events are polled over HTTP from now
    conn.tick(3.0)
    assert conn.actions_to_do() == [Poll(None)]
    conn.poll_failed("down too", 3.0)
    assert conn.next_deadline() == 5.0  # 0.5 * 4: the background retries continue
    conn.tick(5.0)
    assert conn.actions_to_do() == [Connect(4)]
    assert conn.save_channel is SaveChannel.HTTP  # still HTTP while the attempt runs
    conn.connect_failed("refused", 6.0)
    conn.tick(100.0)
    conn.connect_failed("refused", 100.0)
    conn.actions_to_do()
    conn.poll_failed("down too", 100.0)
    assert conn.next_deadline() == 104.0  # capped at 8 * 0.5 (and the next poll, 5 s on)
    conn.tick(104.0)
    conn.connection_made(104.5)
    assert (conn.fallback, conn.failures, conn.save_channel) == (False, 0, SaveChannel.HTTP)
    changes = [e for e in conn.events_received() if isinstance(e, ConnectionChanged)]
    assert any(e.fallback for e in changes) and not changes[-1].fallback


def test_reconnects_resume_after_the_last_position_received() -> None:
    conn = make()
    conn.start(0.0)
    assert conn.actions_to_do() == [Connect(1, None)]  # nothing received yet
    conn.connection_made(0.0)
    conn.receive_frame(
        json.dumps({"type": "welcome", "socketId": "S1", "role": "c", "position": "5-0"}), 0.1
    )
    assert conn.last_position == "5-0"
    conn.receive_frame(
        json.dumps({"type": "stage_changed", "planId": "P", "timestamp": "t", "position": "6-0"}), 1
    )
    conn.receive_frame(json.dumps({"type": "exam_end", "message": "m", "timestamp": "t"}), 1.0)
    assert conn.last_position == "6-0"  # exam_end is state, not a stream event
    conn.connection_lost("gone", 2.0)
    conn.tick(10.0)
    assert conn.actions_to_do() == [Connect(2, "6-0")]
    conn.connect_failed("refused", 10.5)
    conn.tick(20.0)
    assert conn.actions_to_do() == [Connect(3, "6-0")]
    conn.connection_made(20.0)
    # A resume's welcome has no position: the old one stands until the replay moves it on.
    conn.receive_frame(json.dumps({"type": "welcome", "socketId": "S2", "role": "c"}), 20.1)
    assert conn.last_position == "6-0"
    conn.receive_frame(json.dumps({"type": "note", "position": "7-0"}), 20.2)
    conn.receive_frame(json.dumps({"type": "resumed", "position": "8-0", "replayed": 1}), 20.3)
    assert conn.last_position == "8-0"
    conn.receive_frame(
        json.dumps({"type": "reload_state", "reason": "position_too_old", "position": "9-0"}), 21
    )
    assert conn.last_position == "9-0"
    conn.connection_lost("gone", 22.0)
    conn.tick(30.0)
    assert conn.actions_to_do() == [Connect(2, "9-0")]


def test_retry_now_skips_the_wait() -> None:
    conn = opened(make())
    conn.connection_lost("gone", 1.0)
    conn.actions_to_do()
    conn.retry_now(1.1)
    assert conn.state is ConnectionState.CONNECTING
    assert conn.actions_to_do() == [Connect(2)]


def test_close_drops_an_open_socket_and_stays_closed() -> None:
    conn = opened(make())
    conn.close(1.0)
    assert conn.actions_to_do() == [Drop("closing")]
    assert conn.state is ConnectionState.CLOSED
    assert conn.save_channel is None and conn.next_deadline() is None
    conn.connection_lost("late", 2.0)
    conn.tick(50.0)
    assert conn.state is ConnectionState.CLOSED and conn.actions_to_do() == []


def test_inputs_out_of_order_are_local_errors() -> None:
    conn = make()
    with pytest.raises(LocalProtocolError):
        conn.connection_made(0.0)
    conn.start(0.0)
    with pytest.raises(LocalProtocolError):
        conn.start(0.0)


def test_frames_of_a_socket_given_up_are_not_answered() -> None:
    conn = opened(make())
    conn.connection_lost("gone", 1.0)
    conn.receive_frame(json.dumps({"type": "ping", "ts": 1}), 1.1)
    assert conn.actions_to_do() == []


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        ConnectionConfig(ping_interval=0)
    with pytest.raises(ValueError):
        ConnectionConfig(max_attempts=0)


def test_in_fallback_events_are_polled_over_http_until_a_socket_opens() -> None:
    conn = make(rand=0.5, poll_interval=4)
    opened(conn)
    conn.receive_frame(
        json.dumps({"type": "welcome", "socketId": "S", "role": "c", "position": "1-0"}), 0
    )
    conn.connection_lost("gone", 1.0)
    for now in (1.5, 3.0):
        conn.tick(now)
        conn.connect_failed("refused", now)
    assert conn.actions_to_do() == [Connect(2, "1-0"), Connect(3, "1-0")]
    assert conn.fallback and conn.next_deadline() == 3.0  # the first poll is due at once
    conn.tick(3.0)
    assert conn.actions_to_do() == [Poll("1-0")]
    assert conn.next_deadline() == 5.0  # the socket retry; no second poll while one is out
    body = {
        "events": [{"type": "stage_changed", "planId": "P", "timestamp": "t", "position": "2-0"}],
        "position": "3-0",
    }
    [frame] = conn.poll_answered(json.dumps(body), 3.2)
    assert isinstance(frame, StageChanged) and conn.last_position == "3-0"
    assert conn.next_deadline() == 5.0
    conn.tick(5.0)  # the socket retry goes; polling goes on meanwhile
    assert conn.actions_to_do() == [Connect(4, "3-0")]
    conn.tick(7.2)
    assert conn.actions_to_do() == [Poll("3-0")]
    conn.poll_failed("timeout", 8.0)
    assert conn.next_deadline() == 12.0
    reload = {"events": [], "position": "9-0", "reload": "position_too_old"}
    conn.tick(12.0)
    conn.actions_to_do()
    assert conn.poll_answered(json.dumps(reload), 12.1) == [ReloadState("position_too_old", "9-0")]
    # a socket that opens ends the polling; a poll answered after that is left to its resume
    conn.tick(16.1)
    assert conn.actions_to_do() == [Poll("9-0")]
    conn.connection_made(16.2)
    assert conn.poll_answered(json.dumps(body), 16.3) == [] and conn.last_position == "9-0"
    conn.tick(30.0)
    assert not [a for a in conn.actions_to_do() if isinstance(a, Poll)]


def test_no_polling_before_fallback_or_after_close() -> None:
    conn = opened(make(poll_interval=1))
    conn.connection_lost("gone", 1.0)
    conn.tick(100.0)
    assert not [a for a in conn.actions_to_do() if isinstance(a, Poll)]  # one failure only
    conn.close(100.0)
    assert conn.next_deadline() is None


def test_a_retry_after_from_the_server_is_waited_plus_the_backoffs_jitter() -> None:
    conn = make(rand=0.5)
    conn.start(0.0)
    conn.actions_to_do()
    conn.connect_failed("503 too_many_connections", 1.0, retry_after=3.0)
    assert conn.next_deadline() == 1.0 + 3.0 + 0.5  # retry-after, then 0.5 * min(8, 1)
    conn.tick(4.4)
    assert conn.actions_to_do() == []
    conn.tick(4.5)
    assert conn.actions_to_do() == [Connect(2)]
