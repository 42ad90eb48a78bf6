"""What the shared client loop needs from an adapter besides the HTTP API (typing.Protocol)."""

from __future__ import annotations

from typing import Protocol

from ..connection import ConnectionConfig
from ..messages import Device
from .api import Session

__all__ = ["ClientSettings", "DeviceIdStore", "SessionStore", "Socket"]


class ClientSettings(Protocol):
    """The settings every adapter's ``ClientConfig`` has (read by the shared loop)."""

    @property
    def base_url(self) -> str: ...  # the HTTP API, e.g. http://127.0.0.1:8000
    @property
    def plan_id(self) -> str: ...
    @property
    def exam_code(self) -> str: ...
    @property
    def device(self) -> Device: ...
    @property
    def connection(self) -> ConnectionConfig: ...
    @property
    def request_timeout(self) -> float: ...  # a save with no answer by then is retried
    @property
    def max_batch(self) -> int: ...
    @property
    def verify_receipts(self) -> bool: ...
    @property
    def open_timeout(self) -> float: ...  # socket handshake
    @property
    def restore_on_start(self) -> bool: ...


class Socket(Protocol):
    """One open WebSocket, as an adapter's socket transport provides it."""

    async def send(self, frame: str) -> None:
        """Send a text frame; TransportError if the socket is closed."""
        ...

    async def recv(self) -> str | bytes:
        """The next message; TransportError once the socket is closed."""
        ...

    def abort(self) -> None:
        """Drop the connection now (a dead peer would never finish a closing handshake)."""
        ...

    async def close(self) -> None: ...


class SessionStore(Protocol):
    """The last session of one login, kept on the device so an offline restart can log in."""

    async def save(self, session: Session) -> None: ...

    async def load(self) -> Session | None:
        """The cached session, or None when there is none usable."""
        ...


class DeviceIdStore(Protocol):
    """This device's id for the plan, kept device-wide (not in a candidate's store): a key
    login sends it before the candidate, and so their store, is known."""

    async def load(self) -> str | None: ...

    async def save(self, device_id: str) -> None:
        """Keep it (a failure is swallowed: the answer store keeps the id too)."""
        ...
