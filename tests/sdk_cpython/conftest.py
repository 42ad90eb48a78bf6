"""The in-test API and socket server (cpython_fakes.py) as fixtures, for every client test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from cpython_fakes import FakeApi, FakeSocketServer
from cpython_fakes import socket_server as start_socket_server


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
async def server(api: FakeApi) -> AsyncIterator[FakeSocketServer]:
    async with start_socket_server(api) as fake:
        yield fake
