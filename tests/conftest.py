"""Shared fixtures. Server imports stay inside fixtures: tests/sdk also runs inside Pyodide."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Runs inside Pyodide only (bash tests/pyodide/run.sh, nox -s pyodide), never on CPython.
collect_ignore = ["pyodide"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server for the whole run, on a unix socket; its URL.

    Started through the server's own embedded-Redis code. No binary is a failure, not a skip:
    CI installs Redis, and a silent skip would hide that nothing was tested.
    """
    from examsync_server.process.embedded_redis import EmbeddedRedis

    directory = Path(os.environ.get("EXAMSYNC_TEST_TMP", tmp_path_factory.mktemp("redis")))
    server = EmbeddedRedis.start_sync(directory, appendonly=False)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The test Redis, emptied before each test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    return redis_server


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()
