"""What both adapters share: the HTTP API over a pluggable sender, and the client's loop.

Standard library only (asyncio), so it runs on CPython and on Pyodide's WebLoop alike. An
adapter (``examsync.cpython``, ``examsync.pyodide``) subclasses :class:`HttpApi` with a sender
and :class:`BaseExamClient` with its store, socket, verifier and session cache.
"""

from __future__ import annotations

from .api import CachedPackage, HttpApi, PackageCache, Response, Session
from .client import BaseExamClient, ClientEvent
from .interfaces import ClientSettings, SessionStore, Socket
from .socket_auth import authenticate

__all__ = [
    "BaseExamClient",
    "CachedPackage",
    "ClientEvent",
    "ClientSettings",
    "HttpApi",
    "PackageCache",
    "Response",
    "Session",
    "SessionStore",
    "Socket",
    "authenticate",
]
