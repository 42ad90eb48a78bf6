"""Where the client keeps things on this device, and the session cache for offline restarts.

store_dir/<plan>/<candidate>/<exam code>.sqlite3     answers, outbox, receipts (+ .lock)
store_dir/<plan>/package/package.zip, package.sha256  the verified exam package
store_dir/<plan>/sessions/<hash of the login>.json    the last session (mode 0600)
store_dir/<plan>/device-id                            this device's id (every new store takes it)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..driver.api import CachedPackage, Session
from ..exceptions import RemoteProtocolError
from ..protocol import decode_json
from .files import write_atomically


def safe_name(name: str) -> str:
    """A path component from an id (ids are [A-Za-z0-9_-] in practice; never trust that)."""
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    if cleaned != name or not cleaned:
        cleaned = f"{cleaned}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return cleaned


def store_path(store_dir: Path, plan_id: str, candidate_id: str, exam_code: str) -> Path:
    return (
        store_dir / safe_name(plan_id) / safe_name(candidate_id) / f"{safe_name(exam_code)}.sqlite3"
    )


def package_dir(store_dir: Path, plan_id: str) -> Path:
    return store_dir / safe_name(plan_id) / "package"


class PackageFiles:
    """The verified package in ``cache_dir``: ``package.zip`` and its ``package.sha256``."""

    def __init__(self, cache_dir: Path) -> None:
        self.zip_path = cache_dir / "package.zip"
        self.sha_path = cache_dir / "package.sha256"

    async def load(self) -> CachedPackage | None:
        try:
            recorded = self.sha_path.read_text().strip()
            data = self.zip_path.read_bytes()
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest() != recorded:
            return None
        return CachedPackage(data, recorded, from_cache=True)

    async def save(self, package: CachedPackage) -> None:
        write_atomically(self.zip_path, package.data)
        write_atomically(self.sha_path, package.sha256.encode())


class DeviceIdFile:
    """This device's id for the plan, read before a sign-in (a key login does not know the
    candidate, so their store, yet)."""

    def __init__(self, store_dir: Path, plan_id: str) -> None:
        self.path = store_dir / safe_name(plan_id) / "device-id"

    async def load(self) -> str | None:
        try:
            return self.path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None

    async def save(self, device_id: str) -> None:
        try:
            write_atomically(self.path, device_id.encode("ascii"))
        except OSError:
            pass  # the answer store keeps the id too; the next login makes another here


class SessionCache:
    """The last session of one login (same server, plan and credentials), for offline starts.

    It holds a bearer token, so it is written readable by this user only. The file name is a
    hash of the credentials, so they are not stored in the clear.
    """

    def __init__(self, store_dir: Path, base_url: str, plan_id: str, *credentials: str | None):
        identity = json.dumps([base_url, plan_id, *credentials])
        name = hashlib.sha256(identity.encode()).hexdigest()[:32]
        self.path = store_dir / safe_name(plan_id) / "sessions" / f"{name}.json"

    async def save(self, session: Session) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps(dict(session.raw)).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    async def load(self) -> Session | None:
        try:
            return Session.from_wire(decode_json(self.path.read_bytes()))
        except (OSError, RemoteProtocolError):
            return None
