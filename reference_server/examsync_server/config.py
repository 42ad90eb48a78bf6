"""Server settings: one frozen value object, filled from arguments or `EXAMSYNC_*` variables."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import StartupError

ENV_PREFIX = "EXAMSYNC_"


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    # The socket server is its own component on its own port (DESIGN §3); 0 picks a free port.
    socket_host: str = "127.0.0.1"
    socket_port: int = 8001
    # What clients are told to connect to; derived from the request's host when empty.
    public_socket_url: str = ""
    data_dir: Path = Path("var")
    # Empty means: start a private redis-server in the data dir (the zero-config default).
    redis_url: str = ""
    # Connections to Redis per process; requests beyond it wait for one to be free.
    redis_max_connections: int = 64
    admin_token: str = ""
    secret_key: str = ""
    session_ttl_seconds: int = 12 * 3600
    max_package_bytes: int = 200 * 1024 * 1024
    # A zip may not unpack to more than this (zip-bomb guard) nor hold more members.
    max_package_unpacked_bytes: int = 1024 * 1024 * 1024
    max_package_members: int = 10_000
    # A plan import of 100,000 candidates is ~40 MB of JSON.
    max_json_body_bytes: int = 64 * 1024 * 1024
    # Saves: the largest body, answers per save, how long a request waits for its commit, and
    # how long after `end` a save of edits made before the end is still taken (flagged late).
    max_save_bytes: int = 1024 * 1024
    max_answers_per_save: int = 100
    ack_timeout_seconds: float = 10.0
    late_grace_seconds: int = 300
    # A queue entry pending this long with a consumer is taken over (its process died).
    claim_idle_ms: int = 30_000
    # Group commit: a batch of fewer than `persister.LINGER_BELOW` entries waits this long once
    # for more before it commits. At 1,000 saves/s this halves the persister's CPU (a batch
    # costs ~1.5 ms of CPU whatever its size) for at most that much more latency
    # (bench/saves.py).
    commit_linger_ms: float = 2.0
    # Attempts before a queue entry that cannot be handled (persisted, applied) goes to the
    # dead letters.
    max_persist_attempts: int = 5
    stage_tick_seconds: float = 0.25
    # The socket server's heartbeat (seed 004): a ping every `ping_interval` seconds; a socket
    # that sends nothing back within `ping_timeout` is dropped and reported DISCONNECTED.
    ping_interval: float = 10.0
    ping_timeout: float = 5.0
    # An examinee disconnected (no socket, no HTTP poll) this long is LOST: connStatusCode LOST
    # and `examinee_lost` to the group's supervisors (seed 004 §10.5).
    lost_after_seconds: float = 60.0
    # Reconnect storms: each socket-server process takes at most `handshake_limit` handshakes
    # per `handshake_window_seconds`; the rest get 503 with Retry-After (sockets/admission.py).
    handshake_limit: int = 5000
    handshake_window_seconds: float = 1.0
    # How often each process compares Redis with SQLite and repairs what is behind.
    repair_interval_seconds: float = 5.0
    # The ASGI server under the app: "uvicorn" (measured faster here: bench/saves.py) or
    # "hypercorn", Quart's own; both are kept working (process/http_server.py).
    http_server: str = "uvicorn"
    # `serve --processes N` runs N processes on the same ports (SO_REUSEPORT); each child has
    # reuse_port set and processes = 1.
    processes: int = 1
    reuse_port: bool = False
    run_workers: bool = True
    run_socket_server: bool = True
    # Off in the HTTP children of `serve --processes N`: one `examsync persister` process
    # commits for all of them, so SQLite work never competes with requests for a GIL.
    run_persister: bool = True
    # The web demo's pages (examsync_server.web): "" or "off" none, "auto" the checkout's
    # web_demo/ (what `examsync demo` uses), or a path.
    web_dir: str = ""
    # Added to the CPU niceness this process inherited (os.nice), from 0 to 19. The HTTP and
    # socket children of `serve --processes N` / `sockets --processes N` take
    # supervisor.YIELD_NICE, the persister none: every save waits for the persister, the one
    # serial stage, so on busy cores it gets a core first (docs/server.md).
    nice: int = 0
    # Names this process to the others (ack channel, persister consumer); random unless set.
    node_id: str = field(default_factory=lambda: secrets.token_hex(4))

    def __post_init__(self) -> None:
        if not (self.ping_interval > 0 and self.ping_timeout > 0 and self.lost_after_seconds > 0):
            raise StartupError(
                f"ping_interval, ping_timeout and lost_after_seconds must be positive, not"
                f" {self.ping_interval}, {self.ping_timeout} and {self.lost_after_seconds}"
            )

        if not 0 <= self.nice <= 19:
            raise StartupError(f"nice must be from 0 to 19, not {self.nice}")
        if self.handshake_limit < 1 or self.handshake_window_seconds <= 0:
            raise StartupError(
                f"handshake_limit must be >= 1 and handshake_window_seconds positive, not"
                f" {self.handshake_limit} and {self.handshake_window_seconds}"
            )

    @property
    def sweep_tick(self) -> float:
        """How often the sweeper looks: often enough that a stopped HTTP poller is reported
        about `ping_interval + ping_timeout` after its last poll."""
        return max(0.05, min(1.0, self.ping_interval / 5, self.ping_timeout / 5))

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "examsync.sqlite3"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    def with_changes(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def settings_from_env(**overrides: object) -> Settings:
    """Settings from `EXAMSYNC_*` variables; explicit non-None overrides win."""
    values: dict[str, object] = {}
    for name, kind in _FIELD_TYPES.items():
        raw = os.environ.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = _convert(name, kind, raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)  # type: ignore[arg-type]


def _flag(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


_FIELD_TYPES: dict[str, Any] = {
    "host": str,
    "port": int,
    "socket_host": str,
    "socket_port": int,
    "public_socket_url": str,
    "data_dir": Path,
    "redis_url": str,
    "admin_token": str,
    "secret_key": str,
    "session_ttl_seconds": int,
    "max_package_bytes": int,
    "max_json_body_bytes": int,
    "max_save_bytes": int,
    "ack_timeout_seconds": float,
    "claim_idle_ms": int,
    "commit_linger_ms": float,
    "late_grace_seconds": int,
    "ping_interval": float,
    "ping_timeout": float,
    "lost_after_seconds": float,
    "handshake_limit": int,
    "handshake_window_seconds": float,
    "run_socket_server": _flag,
    "http_server": str,
    "processes": int,
    "nice": int,
    "reuse_port": _flag,
    "run_persister": _flag,
    "node_id": str,
    "web_dir": str,
}


def _convert(name: str, kind: Any, raw: str) -> object:
    try:
        return kind(raw)
    except ValueError as exc:
        raise StartupError(
            f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {kind.__name__}"
        ) from exc


def load_or_create_secret(data_dir: Path, name: str, given: str) -> tuple[str, bool]:
    """A secret from settings, else from the data dir, else a new one saved there (mode 0600).

    Keeping generated secrets in the data dir lets several server processes sharing that dir,
    and `examsync admin`, agree on them across restarts. Returns (secret, created).
    """
    if given:
        return given, False
    path = data_dir / name
    if path.exists():
        return path.read_text().strip(), False
    # Written whole under a temporary name, then linked into place: a second process starting
    # at the same moment either wins the link or reads the complete winner, never half a file.
    value = secrets.token_urlsafe(32)
    tmp = data_dir / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        return path.read_text().strip(), False
    finally:
        tmp.unlink()
    return value, True
