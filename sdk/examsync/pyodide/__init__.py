"""The Pyodide adapter: the exam client in the browser, over fetch, WebSocket, IndexedDB and
WebCrypto.

The only part of examsync that imports ``js`` or ``pyodide`` (through ``_js``), so it imports
only under Pyodide (``sys.platform == "emscripten"``); ``examsync.create_client`` picks it
there. The same shape as ``examsync.cpython``, pumping the same core and the same loop:

- ``storage``: :class:`IndexedDBStorage`, the core's Storage on IndexedDB (memory fall-back);
- ``transport``: :class:`FetchTransport` (fetch) and :class:`WebSocketTransport`;
- ``receipts``: :class:`WebCryptoVerifier` (``crypto.subtle`` Ed25519);
- ``locks``: one writer per candidate across tabs (Web Locks);
- ``client``: :class:`ExamClient`, the async client.
"""

from __future__ import annotations

from ..driver.api import CachedPackage, Session
from .client import ClientConfig, ClientEvent, ExamClient, default_device
from .receipts import WebCryptoVerifier, webcrypto_ed25519_available
from .storage import IndexedDBStorage, open_storage
from .transport import FetchTransport, WebSocketTransport

__all__ = [
    "CachedPackage",
    "ClientConfig",
    "ClientEvent",
    "ExamClient",
    "FetchTransport",
    "IndexedDBStorage",
    "Session",
    "WebCryptoVerifier",
    "WebSocketTransport",
    "default_device",
    "open_storage",
    "webcrypto_ed25519_available",
]
