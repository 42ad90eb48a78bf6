"""The CPython client's settings."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path

from ..connection import ConnectionConfig
from ..driver.client import ClientEvent
from ..messages import Device

__all__ = ["ClientConfig", "ClientEvent", "default_device"]


def default_device() -> Device:
    return Device(
        type="PC", browser="python-examsync", os=f"{platform.system()} {platform.release()}"
    )


@dataclass(frozen=True, slots=True)
class ClientConfig:
    base_url: str  # the HTTP API, e.g. http://127.0.0.1:8000
    plan_id: str
    exam_code: str
    store_dir: Path  # local answers, the package cache, the session cache
    device: Device = field(default_factory=default_device)
    connection: ConnectionConfig = field(default_factory=ConnectionConfig)
    request_timeout: float = 30.0  # a save with no answer by then is retried
    max_batch: int = 100
    verify_receipts: bool = True  # needs `cryptography`; False keeps receipts unverified
    lock_timeout: float = 5.0  # wait this long for another client to let go of the store
    open_timeout: float = 10.0  # socket handshake
    restore_on_start: bool = True
