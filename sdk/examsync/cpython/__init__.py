"""The CPython adapter: the exam client over httpx, websockets and a sqlite3 file.

The only part of examsync that imports httpx or websockets (``cryptography`` too, and only when
receipts are verified). Everything here only pumps the sans-I/O core:

- ``storage``: :class:`SQLiteStorage`, the core's Storage on a sqlite3 file, one writer at a time;
- ``transport``: :class:`HttpTransport` (httpx) and :class:`SocketTransport` (websockets);
- ``receipts``: :class:`Ed25519Verifier` (cryptography);
- ``config``: :class:`ClientConfig` and the events the client publishes (``ClientEvent``);
- ``client``: :class:`ExamClient`, the async client (the loop is ``examsync.driver``'s, shared
  with the Pyodide adapter); ``sync``: :class:`SyncExamClient`.
"""

from __future__ import annotations

from .client import ExamClient
from .config import ClientConfig, ClientEvent, default_device
from .receipts import Ed25519Verifier
from .storage import SQLiteStorage
from .sync import SyncExamClient
from .transport import HttpTransport, Package, Session, SocketTransport

__all__ = [
    "ClientConfig",
    "ClientEvent",
    "Ed25519Verifier",
    "ExamClient",
    "HttpTransport",
    "Package",
    "SQLiteStorage",
    "Session",
    "SocketTransport",
    "SyncExamClient",
    "default_device",
]
