"""Files only the server's own user may read: the data dir holds auth codes, access keys,
answers, signing keys and secrets (docs/server.md, "Secrets").

Modes are set when a file or directory is created, never loosened afterwards; a directory the
operator made already keeps the mode they gave it (its subdirectories are still made 0700).
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """`path` (and any missing parents) made as directories only this user may enter."""
    if not path.is_dir():
        if not path.parent.is_dir():
            private_dir(path.parent)
        try:
            path.mkdir(mode=DIR_MODE)
        except FileExistsError:  # another process made it first
            pass
    return path


def private_file(path: Path) -> Path:
    """`path` created empty with mode 0600 if it does not exist (a file that exists is left as it
    is): SQLite then gives its -wal and -shm files the same mode."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        pass
    return path


__all__ = ["DIR_MODE", "FILE_MODE", "private_dir", "private_file"]
