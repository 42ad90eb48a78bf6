"""One fuzz target (a real `examsync serve`, seeded) per test module: tests/fuzz/target.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .socket_fuzz import SERVER_OPTIONS
from .target import Target, running_target


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with running_target(tmp_path_factory.mktemp("fuzz") / "data") as found:
        yield found


@pytest.fixture(scope="module")
def socket_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    data = tmp_path_factory.mktemp("fuzz-sockets") / "data"
    with running_target(data, *SERVER_OPTIONS) as found:
        yield found
