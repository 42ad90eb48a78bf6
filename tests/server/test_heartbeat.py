"""The socket server's heartbeat rules and client-info reading, with time passed in."""

from __future__ import annotations

import pytest

from examsync_server.config import Settings, settings_from_env
from examsync_server.errors import StartupError
from examsync_server.sockets.client_info import browser_info
from examsync_server.sockets.heartbeat import Heartbeat


def test_a_socket_is_pinged_each_interval_and_dead_when_a_ping_goes_unanswered() -> None:
    beat: Heartbeat[str] = Heartbeat(interval=10, timeout=5)
    beat.add("a", now=0)
    assert beat.due(9.9) == ([], [])
    assert beat.due(10) == (["a"], [])
    assert beat.due(14.9) == ([], [])  # waiting for the answer: no second ping
    beat.seen("a")
    assert beat.due(19.9) == ([], [])
    assert beat.due(20) == (["a"], [])  # the next ping is an interval after the last
    assert beat.due(24.9) == ([], [])
    assert beat.due(25) == ([], ["a"])
    assert len(beat) == 0 and beat.due(100) == ([], [])  # the dead are forgotten


def test_sockets_keep_their_own_schedule_and_removed_ones_are_left_alone() -> None:
    beat: Heartbeat[str] = Heartbeat(interval=1, timeout=1)
    beat.add("early", now=0)
    beat.add("late", now=0.5)
    beat.add("gone", now=0)
    beat.remove("gone")
    beat.seen("gone")  # a frame racing the removal is no error
    assert beat.due(1) == (["early"], [])
    assert beat.due(1.5) == (["late"], [])
    beat.seen("late")
    assert beat.due(2) == ([], ["early"])
    assert beat.due(2.5) == (["late"], [])


def test_the_tick_keeps_detection_close_to_interval_plus_timeout() -> None:
    assert Heartbeat(interval=10, timeout=5).tick == 1.0
    assert Heartbeat(interval=0.3, timeout=0.3).tick == pytest.approx(0.06)


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
            " Chrome/120.0.6099.109 Safari/537.36",
            "Chrome 120.0",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
            " Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
            "Edge 120.0",
        ),
        ("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0", "Firefox 121.0"),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like"
            " Gecko) Version/17.2 Safari/605.1.15",
            "Safari 17.2",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML,"
            " like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
            "Safari 17.2",
        ),
        ("Mozilla/5.0 (Linux; Android 14) Chrome/120 Mobile Safari/537.36", "Chrome 120.0"),
        ("Python/3.11 websockets/17.4", "Python/3.11 websockets/17.4"),
        ("", ""),
    ],
)
def test_browser_info_reads_the_user_agent_as_the_seed_writes_it(agent: str, expected: str) -> None:
    assert browser_info(agent) == expected


def test_ping_settings_come_from_the_environment_and_must_be_positive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXAMSYNC_PING_INTERVAL", "2.5")
    monkeypatch.setenv("EXAMSYNC_PING_TIMEOUT", "1")
    settings = settings_from_env()
    assert (settings.connections.ping_interval, settings.connections.ping_timeout) == (2.5, 1.0)
    assert (Settings().connections.ping_interval, Settings().connections.ping_timeout) == (
        10.0,
        5.0,
    )
    with pytest.raises(StartupError, match="ping_interval"):
        Settings().with_changes(ping_timeout=0)
    monkeypatch.setenv("EXAMSYNC_PING_INTERVAL", "soon")
    with pytest.raises(StartupError, match="EXAMSYNC_PING_INTERVAL"):
        settings_from_env()
