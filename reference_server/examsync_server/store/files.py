"""The file store: a directory by default (exam packages now; capture blobs later).

Writes go to a temporary file, are fsynced, then renamed into place: a reader sees the old
file or the new one, never half of one.
"""

from __future__ import annotations

from pathlib import Path

from examsync.cpython.files import write_atomically


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def package_path(self, plan_id: str, sha256: str) -> Path:
        return self.root / "packages" / plan_id / f"{sha256}.zip"

    def put(self, path: Path, data: bytes) -> None:
        write_atomically(path, data)

    def read(self, path: Path) -> bytes:
        return path.read_bytes()
