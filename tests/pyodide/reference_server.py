"""The real reference server for the Pyodide end-to-end tests (started by run.sh, on CPython).

    python tests/pyodide/reference_server.py DATA_DIR

Starts ``examsync serve`` on free loopback ports with its private Redis, with the sample plan
imported, packaged, prepared and started (the integration tests' own helpers), prints one JSON
line (URLs, admin token, plan, exam code, credentials), and stops the server when stdin closes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for `integration`

from integration.conftest import ADMIN_TOKEN, ServerProcess  # noqa: E402
from integration.sdk_process import AUTH_CODE, CANDIDATE, EXAM_CODE, PLAN_ID  # noqa: E402
from integration.test_sdk_client import serve_exam  # noqa: E402


def main() -> None:
    servers: list[ServerProcess] = []
    try:
        # No Redis URL: the server starts its private redis-server and stops it at exit.
        server = serve_exam(Path(sys.argv[1]), None, servers)
        info = {
            "baseUrl": server.base,
            "adminToken": ADMIN_TOKEN,
            "planId": PLAN_ID,
            "examCode": EXAM_CODE,
            "candidateId": CANDIDATE,
            "authCode": AUTH_CODE,
        }
        print(json.dumps(info), flush=True)
        sys.stdin.read()  # until run.sh closes our stdin (or exits)
    finally:
        for started in servers:
            started.stop()


if __name__ == "__main__":
    main()
