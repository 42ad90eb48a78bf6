"""The server the fuzzers attack: a real `examsync serve` process (its own Redis, its own SQLite
file) with the demo plan imported, its package uploaded, prepared and started, and a session
token for each principal. Shared by the bounded tests and `nox -s fuzz` (tests/fuzz/README.md)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from examsync_server.demo.sample import EXAM_CODE, PLAN_ID, sample_package, sample_plan
from integration.conftest import ADMIN_TOKEN, ServerProcess, start_server

CANDIDATE = {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"}
SUPERVISOR = {"planId": PLAN_ID, "supervisorId": "SUP202301", "authCode": "SUPAUTH01"}
# Ids the fuzzers put into path parameters now and then, so that generated requests reach
# past the "no such plan" check into the code behind it.
KNOWN_IDS = {
    "plan_id": PLAN_ID,
    "exam_code": EXAM_CODE,
    "candidate_id": CANDIDATE["candidateId"],
}


@dataclass(frozen=True)
class Target:
    server: ServerProcess
    tokens: dict[str, str]  # principal name -> bearer token
    socket_url: str

    @property
    def base(self) -> str:
        return self.server.base

    def alive(self) -> bool:
        """The process still runs and answers its health check."""
        if self.server.process.poll() is not None:
            return False
        return httpx.get(self.base + "/healthz", timeout=5).status_code == 200


def _login(base: str, body: dict[str, str]) -> dict[str, str]:
    response = httpx.post(base + "/api/v1/sessions", json=body, timeout=10)
    assert response.status_code == 201, response.text
    found: dict[str, str] = response.json()
    return found


@contextmanager
def running_target(data_dir: Path, *extra: str) -> Iterator[Target]:
    """Start the server with its own Redis in `data_dir`, seed the plan, log everyone in."""
    server = start_server(data_dir, None, *extra)
    try:
        for method, path, kwargs in (
            ("PUT", "", {"json": sample_plan()}),
            ("PUT", "/package", _package_upload()),
            ("POST", "/prepare", {}),
            ("POST", "/start", {}),
        ):
            response = server.admin(method, f"/api/v1/admin/plans/{PLAN_ID}{path}", **kwargs)
            assert response.status_code in (200, 201), response.text
        candidate = _login(server.base, CANDIDATE)
        supervisor = _login(server.base, SUPERVISOR)
        tokens = {
            "candidate": candidate["token"],
            "supervisor": supervisor["token"],
            "admin": ADMIN_TOKEN,
        }
        yield Target(server, tokens, candidate["socketUrl"])
    finally:
        server.stop()


def _package_upload() -> dict[str, object]:
    data = sample_package()
    return {
        "content": data,
        "headers": {
            "Content-Type": "application/zip",
            "X-Content-SHA256": hashlib.sha256(data).hexdigest(),
        },
    }
