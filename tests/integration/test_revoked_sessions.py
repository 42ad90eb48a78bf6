"""A revoked session, met by the SDK against a real `examsync serve` (issue 15, defect 4).

`401 session_revoked` takes the path of an expired token: the client signs in again with the
login's credentials and sends again; nothing shows "saved" before the server kept it, and the
edits stay on the device meanwhile. (A person removed from the plan fails that sign-in with
`invalid_credentials`: the edits then stay on the device, as for any refused sign-in.)
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from examsync import Alert, ConnectionState, DeliveryFailure
from examsync.cpython import ExamClient

from .conftest import ServerProcess
from .sdk_process import CANDIDATE, PLAN_ID, client_config
from .test_sdk_client import login, recorder, serve_exam, stored_answers, until


def revoke(server: ServerProcess) -> None:
    response = server.admin(
        "POST", f"/api/v1/admin/plans/{PLAN_ID}/sessions/revoke", json={"candidates": [CANDIDATE]}
    )
    assert response.status_code == 200, response.text


async def test_a_revoked_session_is_signed_in_again_and_the_save_is_kept(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    server = await asyncio.to_thread(serve_exam, tmp_path / "data", redis_url, servers)
    config = client_config(server.base, tmp_path / "device")
    http_saves = replace(config, connection=replace(config.connection, socket_saves=False))
    async with ExamClient(http_saves) as client:
        seen = recorder(client)
        await login(client)
        client.set_answer("Q001", "1")
        assert await client.flush(timeout=10)
        first_token = client._http.token  # noqa: SLF001 - the session's token
        await asyncio.to_thread(revoke, server)
        client.set_answer("Q001", "2")
        assert await client.flush(timeout=10), client.sync_state
        assert not any(isinstance(e, DeliveryFailure) for e in seen)
        assert stored_answers(server)["Q001"] == ("2", 2)
        assert client._http.token != first_token  # noqa: SLF001 - signed in again


async def test_a_socket_closed_for_a_revoked_session_reopens_with_a_new_sign_in(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    """The server closes the socket (4401 session_revoked); its reconnect meets the revoked
    token at the handshake, and the client signs in again rather than alerting and falling
    back to HTTP."""
    server = await asyncio.to_thread(serve_exam, tmp_path / "data", redis_url, servers)
    async with ExamClient(client_config(server.base, tmp_path / "device")) as client:
        seen = recorder(client)
        await login(client)
        first_token = client._http.token  # noqa: SLF001 - the session's token
        await asyncio.to_thread(revoke, server)
        await until(lambda: client.connection_state is not ConnectionState.OPEN, "the close")
        await until(lambda: client.connection_state is ConnectionState.OPEN, "reopens")
        assert client._http.token != first_token  # noqa: SLF001 - signed in again
        assert not [e for e in seen if isinstance(e, Alert)]
        client.set_answer("Q001", "after")
        assert await client.flush(timeout=10)
        assert stored_answers(server)["Q001"] == ("after", 1)
