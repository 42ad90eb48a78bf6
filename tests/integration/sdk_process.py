"""An exam client in a process of its own, for the SIGKILL test of test_sdk_client.py.

    python sdk_process.py BASE_URL STORE_DIR crash|resume

It talks to the test through JSON lines: one object per line on stdout, commands on stdin.

- ``crash``: log in, set FIRST and wait for their acks, print ``{"step": "synced"}``; wait for
  ``go`` on stdin (the test has paused the network by then); set REST, each durable when
  ``set_answer`` returns; wait until a save of them is in flight; print ``{"step": "dying"}``
  and SIGKILL itself, so the process dies with its answers unacknowledged.
- ``resume``: log in on the same store (login restores), flush, print ``{"step": "synced"}``
  with the restore report, close.

Also the home of the client settings both processes and the in-test clients use: short
heartbeat and reconnect backoff, so the tests stay fast.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from examsync import Backoff, ConnectionConfig, RestoreReport
from examsync.cpython import ClientConfig, ClientEvent, SyncExamClient

PLAN_ID, EXAM_CODE = "PLAN202401", "EXAM202401"
CANDIDATE, AUTH_CODE = "CAND202301", "AUTH1234"

# What the crash run sets: FIRST is acknowledged before the network stops; REST is not.
# Q001 is edited again in REST, so an acknowledged answer has an unacknowledged newer version.
FIRST = {"Q001": "1", "Q002": "2"}
REST = {
    "Q003": "24",
    "Q004": "주말에는 책을 읽습니다.",
    "Q005": "제 고향은 부산입니다.",
    "Q001": "4",
}


def client_config(base_url: str, store_dir: Path) -> ClientConfig:
    return ClientConfig(
        base_url=base_url,
        plan_id=PLAN_ID,
        exam_code=EXAM_CODE,
        store_dir=store_dir,
        connection=ConnectionConfig(
            ping_interval=1.0,
            ping_timeout=2.0,
            max_attempts=3,
            backoff=Backoff(base=0.05, cap=0.25, min_delay=0.02),
        ),
        request_timeout=5.0,
        open_timeout=2.0,
        lock_timeout=2.0,
    )


def say(**message: Any) -> None:
    print(json.dumps(message, ensure_ascii=False), flush=True)


def answers_of(client: SyncExamClient) -> dict[str, list[Any]]:
    return {code: [a.value, a.version] for code, a in client.answers.items()}


def crash(client: SyncExamClient) -> None:
    for code, value in FIRST.items():
        client.set_answer(code, value)
    if not client.flush(timeout=10):
        raise SystemExit("FIRST was not acknowledged in 10 s")
    say(step="synced", answers=answers_of(client))
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("expected 'go'")
    for code, value in REST.items():
        client.set_answer(code, value)
    deadline = time.monotonic() + 5
    while not client.sync_state.in_flight:
        if time.monotonic() > deadline:
            raise SystemExit("no save went out in 5 s")
        time.sleep(0.01)
    state = client.sync_state
    say(step="dying", answers=answers_of(client), pending=state.pending)
    os.kill(os.getpid(), signal.SIGKILL)


def resume(client: SyncExamClient, reports: list[RestoreReport]) -> None:
    synced = client.flush(timeout=15)
    say(
        step="synced" if synced else "not synced",
        answers=answers_of(client),
        receipts={code: r.payload.version for code, r in client.receipts.items()},
        kept_local=sorted(code for r in reports for code in r.kept_local),
    )


def main() -> None:
    base_url, store_dir, mode = sys.argv[1:4]
    client = SyncExamClient(client_config(base_url, Path(store_dir)))
    reports: list[RestoreReport] = []

    def listen(event: ClientEvent) -> None:
        if isinstance(event, RestoreReport):
            reports.append(event)

    client.add_listener(listen)
    with client:
        client.login(candidate_id=CANDIDATE, auth_code=AUTH_CODE)
        if mode == "crash":
            crash(client)
        else:
            resume(client, reports)


if __name__ == "__main__":
    main()
