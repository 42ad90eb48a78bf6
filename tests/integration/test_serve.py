"""`examsync serve` and `examsync admin` as processes: the zero-config default, the lifecycle
over HTTP and the socket server, two processes sharing one Redis and one SQLite file."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from websockets.asyncio.client import connect

from examsync.frames import auth_frame
from examsync_server.demo.sample import PLAN_ID, sample_package, sample_plan
from examsync_server.process.supervision import YIELD_NICE

from .conftest import ADMIN_TOKEN, ServerProcess, examsync, start_server, write_json


def login(server: ServerProcess, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(server.base + "/api/v1/sessions", json=body, timeout=10)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def receive(
    session: dict[str, Any], kind: str, ready: asyncio.Event, timeout: float = 30
) -> dict[str, Any]:
    """The first frame of `kind`; `timeout` between frames is generous because what sends it
    may be a CLI process starting on a busy machine (5 s once failed a CI run)."""
    async with connect(session["socketUrl"]) as ws:
        await ws.send(auth_frame(session["token"]))
        assert json.loads(await ws.recv())["type"] == "welcome"
        ready.set()
        while True:
            message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            if message["type"] == kind:
                return message


@pytest.mark.parametrize("http_server", ["uvicorn", "hypercorn"])
def test_zero_config_serve_walks_a_plan_through_the_cli(
    tmp_path: Path, servers: list[ServerProcess], http_server: str
) -> None:
    """No --redis-url: the server starts its own Redis on a unix socket and stops it at exit.
    Both HTTP servers are kept working."""
    data = tmp_path / "data"
    server = start_server(data, None, "--http-server", http_server)
    servers.append(server)
    sock = data / "redis" / "redis.sock"
    assert sock.exists()
    assert (data / "examsync.sqlite3").exists()
    live = redis.Redis(unix_socket_path=str(sock), decode_responses=True)
    assert live.config_get("appendonly") == {"appendonly": "yes"}
    assert live.config_get("port") == {"port": "0"}  # bound to no TCP port

    cli = ["admin", "--url", server.base, "--token", ADMIN_TOKEN]
    plan_file = write_json(tmp_path / "plan.json", sample_plan())
    zip_file = tmp_path / "package.zip"
    zip_file.write_bytes(sample_package())
    imported = json.loads(examsync(*cli, "import", str(plan_file)).stdout)
    assert imported["planId"] == PLAN_ID and imported["counts"]["candidates"] == 10
    assert json.loads(examsync(*cli, "package", PLAN_ID, str(zip_file)).stdout)["sha256"]
    assert json.loads(examsync(*cli, "prepare", PLAN_ID).stdout)["status"] == "ready"
    assert live.hget(f"exam_plan:{PLAN_ID}", "status") == "ready"
    assert json.loads(examsync(*cli, "start", PLAN_ID).stdout)["status"] == "in_progress"

    revoked = login(
        server, {"planId": PLAN_ID, "candidateId": "CAND202302", "authCode": "AUTH1235"}
    )
    answer = json.loads(examsync(*cli, "revoke", PLAN_ID, "--candidate", "CAND202302").stdout)
    assert answer["revokedSessions"]["candidates"] == ["CAND202302"]
    me = httpx.get(
        server.base + "/api/v1/me", headers={"Authorization": f"Bearer {revoked['token']}"}
    )
    assert me.status_code == 401 and me.json()["error"]["code"] == "session_revoked"
    assert examsync(*cli, "revoke", PLAN_ID, check=False).returncode == 2  # names nobody

    session = login(
        server, {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"}
    )
    assert session["socketUrl"] == f"ws://127.0.0.1:{server.socket_port}/ws"

    async def end_while_listening() -> dict[str, Any]:
        ready = asyncio.Event()
        listener = asyncio.create_task(receive(session, "exam_end", ready))
        await asyncio.wait_for(ready.wait(), 5)
        ended = await asyncio.to_thread(examsync, *cli, "end", PLAN_ID, "--revoke-sessions")
        assert json.loads(ended.stdout)["revokedSessions"]["everyCandidate"] is True
        return await listener

    message = asyncio.run(end_while_listening())
    assert message["message"] == "시험이 종료되었습니다."
    status = json.loads(examsync(*cli, "status", PLAN_ID).stdout)
    assert status["status"] == "completed" and status["redis"] == {"status": "completed"}
    assert json.loads(examsync(*cli, "dead-letters", PLAN_ID).stdout)["deadLetters"] == []
    assert json.loads(examsync(*cli, "dead-letters", PLAN_ID, "--replay").stdout)["replayed"] == []
    unknown = examsync(*cli, "dead-letters", PLAN_ID, "--replay", "--id", "7", check=False)
    assert unknown.returncode == 1 and "dead_letter_not_found" in unknown.stderr
    assert examsync(*cli, "dead-letters", PLAN_ID, "--id", "7", check=False).returncode == 2
    live.close()

    assert server.stop() == 0, server.output()[-3000:]
    assert not sock.exists()  # the private Redis is gone with the server
    assert subprocess.run(["pgrep", "-f", str(sock)], capture_output=True).returncode == 1


def test_cli_errors_are_clear_not_tracebacks(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = examsync("serve", "--data-dir", str(blocker / "data"), check=False)
    assert result.returncode == 2
    assert "not writable" in result.stderr and "Traceback" not in result.stderr
    result = examsync(
        "admin", "--url", "http://127.0.0.1:9", "--token", "x", "status", "P", check=False
    )
    assert result.returncode != 0
    assert "cannot reach" in result.stderr and "Traceback" not in result.stderr
    result = examsync("admin", "--data-dir", str(tmp_path), "status", "P", check=False)
    assert result.returncode != 0 and "no admin token" in result.stderr


def two_prepared(
    data: Path, redis_url: str, servers: list[ServerProcess], plan: dict[str, Any]
) -> tuple[ServerProcess, ServerProcess]:
    """Two `serve` processes on one Redis and one data dir; `plan` imported and packaged
    through the first, prepared through the second."""
    a = start_server(data, redis_url)
    servers.append(a)
    b = start_server(data, redis_url)
    servers.append(b)
    assert a.admin("PUT", f"/api/v1/admin/plans/{PLAN_ID}", json=plan).status_code == 201
    package = sample_package()
    response = a.admin(
        "PUT",
        f"/api/v1/admin/plans/{PLAN_ID}/package",
        content=package,
        headers={"X-Content-SHA256": hashlib.sha256(package).hexdigest()},
    )
    assert response.status_code == 200, response.text
    assert b.admin("POST", f"/api/v1/admin/plans/{PLAN_ID}/prepare").status_code == 200
    return a, b


def test_two_processes_share_redis_and_sqlite(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    """A socket on process B gets the exam_end that process A's admin call produced, and the
    stage timers of both processes move each clock exactly once."""
    data = tmp_path / "shared"
    plan = sample_plan(candidates=4)
    plan["stages"][0]["time_limit_seconds"] = 1
    a, b = two_prepared(data, redis_url, servers, plan)

    session = login(b, {"planId": PLAN_ID, "candidateId": "CAND202302", "authCode": "AUTH1235"})
    url = session["socketUrl"]
    assert str(b.socket_port) in url

    async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        ready = asyncio.Event()
        stage_events: list[dict[str, Any]] = []

        async def collect() -> dict[str, Any]:
            async with connect(url) as ws:
                await ws.send(auth_frame(session["token"]))
                await ws.recv()
                ready.set()
                while True:
                    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if message["type"] == "stage_changed":
                        stage_events.append(message)
                    if message["type"] == "exam_end":
                        return message

        listener = asyncio.create_task(collect())
        await asyncio.wait_for(ready.wait(), 5)
        started = await asyncio.to_thread(a.admin, "POST", f"/api/v1/admin/plans/{PLAN_ID}/start")
        assert started.status_code == 200
        await asyncio.sleep(2.0)  # STEP01 (1 s) runs out; both processes' timers see it
        ended = await asyncio.to_thread(a.admin, "POST", f"/api/v1/admin/plans/{PLAN_ID}/end")
        assert ended.status_code == 200
        return stage_events, await listener

    stage_events, end = asyncio.run(scenario())
    assert end["planId"] == PLAN_ID
    assert [e["stageId"] for e in stage_events] == ["STEP01", "STEP02"]  # each move once
    with closing(sqlite3.connect(data / "examsync.sqlite3")) as db:
        assert db.execute("SELECT current_stage_id, status FROM exam_plan").fetchone() == (
            "STEP02",
            "completed",
        )
    assert redis.Redis.from_url(redis_url).xlen("queue:exam_end") == 1


def test_a_revocation_made_by_one_process_is_refused_by_the_other_at_once(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    """Process A revokes; process B, told over Redis, closes its socket of the session (4401)
    and refuses its requests well before its own reload from SQLite (10 s) would."""
    a, b = two_prepared(tmp_path / "shared", redis_url, servers, sample_plan(candidates=4))
    session = login(b, {"planId": PLAN_ID, "candidateId": "CAND202302", "authCode": "AUTH1235"})
    me = {"Authorization": f"Bearer {session['token']}"}
    assert httpx.get(b.base + "/api/v1/me", headers=me, timeout=5).status_code == 200

    async def scenario() -> tuple[int | None, str | None, float]:
        async with connect(f"{session['socketUrl']}?token={session['token']}") as ws:
            assert json.loads(await ws.recv())["type"] == "welcome"
            loop = asyncio.get_running_loop()
            asked = loop.time()
            revoked = await asyncio.to_thread(
                a.admin,
                "POST",
                f"/api/v1/admin/plans/{PLAN_ID}/sessions/revoke",
                json={"candidates": ["CAND202302"]},
            )
            assert revoked.status_code == 200, revoked.text
            await asyncio.wait_for(ws.wait_closed(), 5)
            return ws.protocol.close_code, ws.protocol.close_reason, loop.time() - asked

    code, reason, took = asyncio.run(scenario())
    assert (code, reason) == (4401, "session_revoked")
    assert took < 3.0
    refused = httpx.get(b.base + "/api/v1/me", headers=me, timeout=5)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "session_revoked"


def test_a_relative_data_dir_works(tmp_path: Path, servers: list[ServerProcess]) -> None:
    """`examsync serve --data-dir var` from the project folder, as the README runs it: the
    private Redis's unix:// URL must not read "var" as a host name."""
    server = start_server(Path("var"), None, cwd=tmp_path)
    servers.append(server)
    assert httpx.get(server.base + "/healthz", timeout=5).json()["checks"]["redis"] == "ok"
    assert (tmp_path / "var" / "redis" / "redis.sock").exists()


def thread_niceness(pid: str) -> list[int]:
    """The nice value of each thread of a process (field 19 of /proc/…/task/…/stat)."""
    return [
        int((task / "stat").read_text().rsplit(")", 1)[1].split()[16])
        for task in Path(f"/proc/{pid}/task").iterdir()
    ]


def test_several_processes_share_the_ports(tmp_path: Path, servers: list[ServerProcess]) -> None:
    """`serve --processes 2`: two HTTP children on one port and one persister; saves
    received by either are acknowledged after the persister's commit, also across a
    persister killed and restarted; a stop stops every child and Redis."""
    from examsync.messages import AnswerEntry, Behavior, Device, Metadata, SavePayload
    from examsync.protocol import canonical_json, format_timestamp, parse_timestamp

    data = tmp_path / "data"
    server = start_server(data, None, "--processes", "2")
    servers.append(server)

    def children(command: str) -> list[str]:
        pattern = f"examsync_server {command}"
        found = subprocess.run(
            ["pgrep", "-P", str(server.process.pid), "-f", pattern], capture_output=True, text=True
        )
        return found.stdout.split()

    assert (len(children("serve")), len(children("persister"))) == (2, 1)
    assert (
        server.admin(
            "PUT", f"/api/v1/admin/plans/{PLAN_ID}", json=sample_plan(candidates=2)
        ).status_code
        == 201
    )
    package = sample_package()
    assert (
        server.admin(
            "PUT",
            f"/api/v1/admin/plans/{PLAN_ID}/package",
            content=package,
            headers={"X-Content-SHA256": hashlib.sha256(package).hexdigest()},
        ).status_code
        == 200
    )
    assert server.admin("POST", f"/api/v1/admin/plans/{PLAN_ID}/prepare").status_code == 200
    assert server.admin("POST", f"/api/v1/admin/plans/{PLAN_ID}/start").status_code == 200
    # The HTTP children yield the CPU to the persister, the stage every save waits for: every
    # thread of theirs (niceness is per thread on Linux), none of the persister's.
    own = os.getpriority(os.PRIO_PROCESS, 0)
    niceness = {
        command: {nice - own for pid in children(command) for nice in thread_niceness(pid)}
        for command in ("serve", "persister")
    }
    assert niceness == {"serve": {YIELD_NICE}, "persister": {0}}
    session = login(
        server, {"planId": PLAN_ID, "candidateId": "CAND202301", "authCode": "AUTH1234"}
    )
    for version in range(1, 21):
        # each edit a second after the last: the latest edit wins (docs/protocol.md)
        now = format_timestamp(parse_timestamp("2024-01-15T09:00:00.000Z") + version)
        body = SavePayload(
            PLAN_ID,
            "EXAM202401",
            "CAND202301",
            now,
            {"Q004": AnswerEntry(f"v{version}", version, now)},
            Metadata(Device("PC", "test", "linux"), Behavior()),
            "in_progress",
        ).to_wire()
        # a new connection each time, so the kernel may hand it to either process
        response = httpx.post(
            server.base + "/api/v1/answers",
            content=canonical_json(body),
            headers={"Authorization": f"Bearer {session['token']}"},
            timeout=15,
        )
        assert response.status_code == 200, response.text
        assert response.json()["results"]["Q004"]["status"] == "accepted"
        if version == 18:
            # the persister dies; the supervisor starts another, which commits what was
            # queued meanwhile: the waiting requests are still answered
            os.kill(int(children("persister")[0]), signal.SIGKILL)
    with closing(sqlite3.connect(data / "examsync.sqlite3")) as db:
        assert db.execute("SELECT value, version FROM answer").fetchone() == ("v20", 20)
    persister = children("persister")
    assert server.stop() == 0, server.output()[-3000:]
    assert subprocess.run(["ps", "-p", persister[0]], capture_output=True).returncode == 1
    sock = data / "redis" / "redis.sock"
    assert not sock.exists()
    assert subprocess.run(["pgrep", "-f", str(sock)], capture_output=True).returncode == 1
