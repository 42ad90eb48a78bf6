"""Failed sign-ins count across `examsync serve` processes sharing one Redis (issue 15,
defect 3): an attacker spreading guesses over the processes gets no more than from one."""

from __future__ import annotations

from pathlib import Path

import httpx

from examsync_server.demo.sample import PLAN_ID

from .conftest import ServerProcess, start_server
from .test_connection_status import prepared

RIGHT = {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"}
WRONG = {**RIGHT, "authCode": "AUTH0000"}


def sign_in(server: ServerProcess, body: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{server.base}/api/v1/sessions", json=body, timeout=10)


def test_two_processes_count_one_candidates_failures_together(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    data = tmp_path / "shared"
    a = start_server(data, redis_url)
    servers.append(a)
    b = start_server(data, redis_url)
    servers.append(b)
    prepared(a)

    for server in (a, b, a, b, a):
        assert sign_in(server, WRONG).status_code == 401
    for server in (a, b):
        refused = sign_in(server, RIGHT)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "too_many_attempts"
        assert 0 < int(refused.headers["Retry-After"]) <= 60
    # Every failure is in the log of the process that answered it, never with its code.
    logs = a.output() + b.output()
    assert logs.count("failed sign-in: plan=PLAN202401 role=candidate id=CAND202301") == 7
    assert "AUTH0000" not in logs
