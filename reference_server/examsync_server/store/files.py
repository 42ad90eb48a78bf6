"""The file store: a directory by default (exam packages now; capture blobs later).

Writes go to a temporary file, are fsynced, then renamed into place: a reader sees the old
file or the new one, never half of one.
"""

from __future__ import annotations

import os
from pathlib import Path


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def package_path(self, plan_id: str, sha256: str) -> Path:
        return self.root / "packages" / plan_id / f"{sha256}.zip"

    def put(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def read(self, path: Path) -> bytes:
        return path.read_bytes()
