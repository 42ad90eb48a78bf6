"""examsync reference server: Quart web API, a websockets socket server, Redis and SQLite."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
