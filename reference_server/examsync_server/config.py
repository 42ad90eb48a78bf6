"""Server settings: small frozen value objects by concern, each setting settable by a flag and by
an `EXAMSYNC_*` variable.

A setting's name is unique across the groups and names both ways in: `pipeline.claim_idle_ms`
is `--claim-idle-ms` and `EXAMSYNC_CLAIM_IDLE_MS`. `Settings().with_changes(claim_idle_ms=300)`
takes the same names, so callers need not know the groups. Each setting carries its meaning and
the commands whose flags take it: the CLI's options and the table in docs/server.md are made
from them (tests/server/test_settings.py keeps the table true).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar, cast

from .errors import StartupError

ENV_PREFIX = "EXAMSYNC_"

# The commands whose flags take a setting (examsync serve | demo | sockets | persister).
HTTP = frozenset({"serve", "demo"})
SOCKETS = HTTP | {"sockets"}
PERSISTER = HTTP | {"persister"}
ALL = SOCKETS | PERSISTER
COMMANDS = ("serve", "demo", "sockets", "persister")

HTTP_SERVERS = ("hypercorn", "uvicorn")

T = TypeVar("T")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _setting(default: T, meaning: str, commands: frozenset[str] = ALL) -> T:
    """A field with its default, what it means to an operator, and which commands' flags take it."""
    return field(default=default, metadata={"meaning": meaning, "commands": commands})


@dataclass(frozen=True, slots=True)
class Listen:
    """Where this process listens, and the socket URL clients are told."""

    host: str = _setting(
        "127.0.0.1", "HTTP address; the socket server's too unless `--socket-host` is given", HTTP
    )
    port: int = _setting(8000, "HTTP port", HTTP)
    # The socket server is its own component on its own port (DESIGN §3).
    socket_host: str = _setting(
        "127.0.0.1", "socket-server address (`examsync sockets`: also `--host`)", SOCKETS
    )
    socket_port: int = _setting(8001, "socket-server port; 0 picks a free one", SOCKETS)
    public_socket_url: str = _setting(
        "",
        "the socket URL sessions tell clients; empty: the request's host on the socket port",
        HTTP,
    )


@dataclass(frozen=True, slots=True)
class Storage:
    """Where the durable and the live state are kept."""

    data_dir: Path = _setting(
        Path("var"), "the SQLite file, the file store, generated secrets, the private Redis"
    )
    redis_url: str = _setting(
        "",
        "use this Redis; empty: start a private redis-server in the data dir"
        " (`sockets` and `persister` need the servers' Redis)",
    )
    redis_max_connections: int = _setting(
        64, "connections to Redis per process; requests beyond them wait for a free one"
    )

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "examsync.sqlite3"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"


@dataclass(frozen=True, slots=True)
class Access:
    """Tokens: the admin's, and the secret that signs session tokens."""

    # A flag shows in `ps` and the shell's history: the variable or the data dir keep a secret.
    admin_token: str = _setting(
        "",
        "the admin API's bearer token, at least 22 characters; empty: generated once into the"
        " data dir"
        " (prefer the variable: a flag shows in ps)",
        HTTP,
    )
    secret_key: str = _setting(
        "",
        "signs session tokens; empty: generated once into the data dir"
        " (prefer the variable: a flag shows in ps)",
        SOCKETS,
    )
    session_ttl_seconds: int = _setting(12 * 3600, "how long a session token is valid", HTTP)
    # Each revocation is also announced at once over Redis; the reload bounds a lost message.
    revocation_reload_seconds: float = _setting(
        10.0,
        "how often a process reloads revoked sessions from SQLite: the longest a revoked"
        " session works when the announcement was lost",
        SOCKETS,
    )

    def __post_init__(self) -> None:
        if self.admin_token:  # empty: generated, or read from the data dir (checked there)
            check_admin_token(self.admin_token)
        if self.revocation_reload_seconds <= 0:
            raise StartupError(
                f"revocation_reload_seconds must be positive, not {self.revocation_reload_seconds}"
            )


@dataclass(frozen=True, slots=True)
class Logins:
    """Failed sign-ins: how many are answered before `429`, and the lockout (access/throttle.py).

    An "account" is a candidate or a supervisor of a plan, or, for key login (the key names
    nobody until it matches), the plan and the client's address. 0 turns a limit off."""

    login_failures_per_account_minute: int = _setting(
        5,
        "failed sign-ins a minute per candidate, supervisor, or key login's plan and address",
        HTTP,
    )
    login_failures_per_address_minute: int = _setting(
        30,
        "failed sign-ins a minute per client address, all plans (an exam room's NAT shares one)",
        HTTP,
    )
    login_lockout_after: int = _setting(
        10,
        "failed sign-ins in a row that lock a candidate's or supervisor's account out (0: never)",
        HTTP,
    )
    login_lockout_seconds: int = _setting(
        900, "how long a lockout lasts, unless a supervisor or the admin lifts it", HTTP
    )
    # Off by default: X-Forwarded-For is whatever the client wrote unless a proxy we trust
    # wrote it, and believing it would let an attacker pick a fresh address per guess.
    trusted_proxies: str = _setting(
        "",
        "comma-separated proxy addresses or networks whose X-Forwarded-For names the client;"
        " empty: the connection's address",
        HTTP,
    )

    def __post_init__(self) -> None:
        numbers = (
            self.login_failures_per_account_minute,
            self.login_failures_per_address_minute,
            self.login_lockout_after,
            self.login_lockout_seconds,
        )
        if min(numbers) < 0:
            raise StartupError(f"the login limits must not be negative, not {numbers}")
        self.trusted_networks  # noqa: B018  (refused at start, not at the first request)

    @property
    def trusted_networks(self) -> tuple[IPNetwork, ...]:
        try:
            return tuple(
                ipaddress.ip_network(part.strip(), strict=False)
                for part in self.trusted_proxies.split(",")
                if part.strip()
            )
        except ValueError as exc:
            raise StartupError(f"trusted_proxies: {exc}") from None


@dataclass(frozen=True, slots=True)
class Limits:
    """The largest inputs the server takes."""

    # A plan import of 100,000 candidates is ~40 MB of JSON.
    max_json_body_bytes: int = _setting(
        64 * 1024 * 1024, "the largest plan import (JSON; admin only)", HTTP
    )
    max_package_bytes: int = _setting(
        200 * 1024 * 1024, "the largest exam package (admin only)", HTTP
    )
    # Anyone may log in: the one unauthenticated body stays small (docs/server.md, "The HTTP
    # port's limits").
    max_login_body_bytes: int = _setting(
        4 * 1024, "the largest login body (`POST /sessions`)", HTTP
    )
    max_small_body_bytes: int = _setting(
        64 * 1024, "the largest body of a route without its own limit (stage moves, replays)", HTTP
    )
    # Zip-bomb guards.
    max_package_unpacked_bytes: int = _setting(
        1024 * 1024 * 1024, "the most a package may unpack to", HTTP
    )
    max_package_members: int = _setting(10_000, "the most files a package may hold", HTTP)
    max_save_bytes: int = _setting(1024 * 1024, "the largest save", SOCKETS)
    max_answers_per_save: int = _setting(100, "the most answers in one save", SOCKETS)


@dataclass(frozen=True, slots=True)
class HttpPort:
    """How long the HTTP port waits for a client, and how many it serves at once
    (process/http_protocol.py; Hypercorn takes only `body_idle_timeout_seconds`, as its
    `read_timeout`)."""

    header_timeout_seconds: float = _setting(
        10.0, "a connection whose request headers are not complete this long is closed", HTTP
    )
    body_idle_timeout_seconds: float = _setting(
        30.0, "a request body that sends nothing for this long is cut (408)", HTTP
    )
    max_connections: int = _setting(
        4096, "open HTTP connections per process; more are answered 503 and closed", HTTP
    )

    def __post_init__(self) -> None:
        if not (self.header_timeout_seconds > 0 and self.body_idle_timeout_seconds > 0):
            raise StartupError(
                f"header_timeout_seconds and body_idle_timeout_seconds must be positive, not"
                f" {self.header_timeout_seconds} and {self.body_idle_timeout_seconds}"
            )
        if self.max_connections < 1:
            raise StartupError(f"max_connections must be >= 1, not {self.max_connections}")


@dataclass(frozen=True, slots=True)
class Pipeline:
    """Saves on their way from the queue to SQLite and back as acks."""

    ack_timeout_seconds: float = _setting(
        10.0, "how long a save waits for its commit before it times out", SOCKETS
    )
    late_grace_seconds: int = _setting(
        300, "after `end`, how long saves of edits made before it are taken (flagged late)", SOCKETS
    )
    claim_idle_ms: int = _setting(
        30_000, "a queue entry pending this long is taken over (its process died)"
    )
    # A batch costs about the same CPU whatever its size: at a low rate, waiting a little for
    # more saves CPU for a little latency (docs/server.md, "Lingering for a batch").
    commit_linger_ms: float = _setting(
        2.0,
        "a small batch (group commit) waits this long once for more before it commits",
        PERSISTER,
    )
    max_persist_attempts: int = _setting(
        5, "attempts before an entry that cannot be handled goes to the dead letters"
    )


@dataclass(frozen=True, slots=True)
class Connections:
    """The heartbeat (seed 004) and the gate against reconnect storms (sockets/admission.py)."""

    ping_interval: float = _setting(10.0, "seconds between the socket server's pings")
    ping_timeout: float = _setting(
        5.0, "a socket silent this long after a ping is dropped (DISCONNECTED)"
    )
    lost_after_seconds: float = _setting(
        60.0, "an examinee disconnected this long (no socket, no poll) is LOST (seed 004 §10.5)"
    )
    handshake_limit: int = _setting(
        5000, "handshakes a socket-server process takes per window; the rest get 503", SOCKETS
    )
    handshake_window_seconds: float = _setting(1.0, "the handshake limit's window", SOCKETS)

    def __post_init__(self) -> None:
        if not (self.ping_interval > 0 and self.ping_timeout > 0 and self.lost_after_seconds > 0):
            raise StartupError(
                f"ping_interval, ping_timeout and lost_after_seconds must be positive, not"
                f" {self.ping_interval}, {self.ping_timeout} and {self.lost_after_seconds}"
            )
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


@dataclass(frozen=True, slots=True)
class Timers:
    """How often the background loops look."""

    stage_tick_seconds: float = _setting(0.25, "how often the stage timer moves stage clocks")
    repair_interval_seconds: float = _setting(
        5.0, "how often a process compares Redis with SQLite and repairs what is behind"
    )


@dataclass(frozen=True, slots=True)
class Process:
    """What this process runs, beside how many of its kind, and under which name."""

    # uvicorn, the faster (docs/server.md, "HTTP server"); Hypercorn, Quart's own, kept working.
    http_server: str = _setting(
        "uvicorn", "the ASGI server under the app: uvicorn or hypercorn", HTTP
    )
    # Each child of `--processes N` runs with reuse_port set and processes = 1.
    processes: int = _setting(
        1, "processes sharing the ports (SO_REUSEPORT); above 1 needs uvicorn", SOCKETS
    )
    reuse_port: bool = _setting(
        False, "listen with SO_REUSEPORT (the children of --processes)", SOCKETS
    )
    run_workers: bool = _setting(
        True, "run the workers: state manager, sweeper, stage timer (not the persister)", SOCKETS
    )
    run_socket_server: bool = _setting(
        True, "run the socket server here; off when `examsync sockets` serves the sockets", HTTP
    )
    # Off in the HTTP children of `serve --processes N`: one `examsync persister` process
    # commits for all of them, so SQLite work never competes with requests for a GIL.
    run_persister: bool = _setting(
        True, "commit saves here; off when an `examsync persister` commits them", HTTP
    )
    # The children of `--processes N` take supervision.YIELD_NICE, the persister none: every
    # save waits for the persister, the one serial stage, so on busy cores it gets one first.
    nice: int = _setting(0, "added to the CPU niceness this process inherited, 0 to 19")
    node_id: str = field(
        default_factory=lambda: secrets.token_hex(4),
        metadata={
            "meaning": "names this process to the others (ack channel, persister consumer)",
            "commands": ALL,
        },
    )
    web_dir: str = _setting(
        "",
        "the web demo's pages: a folder, `auto` (the checkout's web_demo/; demo's default),"
        " or empty / `off` for none",
        HTTP,
    )

    def __post_init__(self) -> None:
        if not 0 <= self.nice <= 19:
            raise StartupError(f"nice must be from 0 to 19, not {self.nice}")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a server process is told, in groups; `with_changes` takes settings by name."""

    listen: Listen = field(default_factory=Listen)
    storage: Storage = field(default_factory=Storage)
    access: Access = field(default_factory=Access)
    logins: Logins = field(default_factory=Logins)
    limits: Limits = field(default_factory=Limits)
    http: HttpPort = field(default_factory=HttpPort)
    pipeline: Pipeline = field(default_factory=Pipeline)
    connections: Connections = field(default_factory=Connections)
    timers: Timers = field(default_factory=Timers)
    process: Process = field(default_factory=Process)

    def with_changes(self, **changes: Any) -> Settings:
        """These settings with some changed, by name: `with_changes(claim_idle_ms=300)`."""
        by_group: dict[str, dict[str, Any]] = {}
        for name, value in changes.items():
            if name not in _BY_NAME:
                raise TypeError(f"no setting named {name!r}")
            by_group.setdefault(_BY_NAME[name].group, {})[name] = value
        groups = {
            group: replace(getattr(self, group), **values) for group, values in by_group.items()
        }
        return replace(self, **groups)


@dataclass(frozen=True, slots=True)
class SettingInfo:
    """One setting as an operator sees it: its ways in, its default and meaning."""

    group: str
    name: str
    kind: type
    default: object  # None: made per process (node_id)
    meaning: str
    commands: frozenset[str]

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def variable(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def default_text(self) -> str:
        """The default as its variable would spell it (`30_000`: int() reads the underscores)."""
        if self.default is None:
            return "random per process"
        if isinstance(self.default, bool):
            return str(self.default).lower()
        if isinstance(self.default, int) and self.default >= 10_000:
            return f"{self.default:_}"
        return str(self.default) or "empty"


_KINDS: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool, "Path": Path}


def _describe() -> tuple[SettingInfo, ...]:
    found = []
    for group in fields(Settings):
        for item in fields(cast(Any, group.default_factory)):
            found.append(
                SettingInfo(
                    group=group.name,
                    name=item.name,
                    kind=_KINDS[str(item.type)],
                    default=None if item.default is MISSING else item.default,
                    meaning=item.metadata["meaning"],
                    commands=item.metadata["commands"],
                )
            )
    return tuple(found)


SETTINGS = _describe()
_BY_NAME = {info.name: info for info in SETTINGS}
assert len(_BY_NAME) == len(SETTINGS), "a setting's name must be unique across the groups"


def settings_from_env(**overrides: object) -> Settings:
    """Settings from `EXAMSYNC_*` variables; explicit non-None overrides win."""
    values: dict[str, object] = {}
    for info in SETTINGS:
        raw = os.environ.get(info.variable)
        if raw is not None and raw != "":
            values[info.name] = _convert(info, raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings().with_changes(**values)


def settings_env(settings: Settings) -> dict[str, str]:
    """`settings` as `EXAMSYNC_*` variables, for child processes: all but `node_id`, which
    names one process."""
    env = {}
    for info in SETTINGS:
        if info.name != "node_id":
            value = getattr(getattr(settings, info.group), info.name)
            env[info.variable] = ("1" if value else "0") if info.kind is bool else str(value)
    return env


def _convert(info: SettingInfo, raw: str) -> object:
    try:
        return _flag(raw) if info.kind is bool else info.kind(raw)
    except ValueError as exc:
        raise StartupError(f"{info.variable}={raw!r} is not a valid {info.kind.__name__}") from exc


def _flag(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


# 128 bits: 22 characters of URL-safe base64 hold 132, 32 hex digits 128 (a generated token is
# 43 characters of URL-safe base64, 256 bits).
MIN_ADMIN_TOKEN_CHARS = 22


def check_admin_token(token: str) -> None:
    """Refuse an admin token too short to hold 128 bits of randomness (docs/server.md,
    "Secrets")."""
    if len(token) < MIN_ADMIN_TOKEN_CHARS:
        raise StartupError(
            f"the admin token has {len(token)} characters; it needs at least"
            f" {MIN_ADMIN_TOKEN_CHARS} (128 bits of randomness), for example"
            " `python -c 'import secrets; print(secrets.token_urlsafe(32))'`, or leave it unset"
            " and one is generated"
        )


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
