"""schemathesis against the served OpenAPI document of a real `examsync serve`, as the candidate,
the supervisor and the admin: no 5xx, every response as documented, no hang
(tests/fuzz/README.md). `nox -s fuzz` runs the same with more cases."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .http_fuzz import PRINCIPALS, fuzz, fuzz_bodies
from .target import KNOWN_IDS, Target

CASES = 25  # per operation and principal: ~2,100 requests, ~15 s here
BODIES = 300  # per route: saves and log batches


def test_save_and_log_bodies_get_documented_answers(target: Target) -> None:
    """First in the module: the admin's cases of the last test end the exam."""
    figures = fuzz_bodies(target.base, target.tokens["candidate"], cases=BODIES)
    assert not figures.failures, figures.report()
    for route in ("answers", "logs"):
        label = f"POST /api/v1/{route} (Hypothesis bodies)"
        # taken, not JSON, refused by the route's own checks
        for status in (200, 400, 422):
            assert figures.answers[(label, status)] > 0, figures.report()


# What the fuzzer found, kept as plain requests: each answered a status the document did not
# list for the operation (issue 15, item 9, and the replay route's 400).
FOUND = [
    ("GET", "/api/v1/answers/a%20b", "candidate", None, 422),
    ("GET", "/api/v1/answers/a%20b/history", "candidate", None, 422),
    ("POST", "/api/v1/sessions", "candidate", b"{", 400),
    ("PUT", "/api/v1/admin/plans/PLAN202401", "admin", b"", 400),
    ("POST", "/api/v1/admin/plans/PLAN202401/advance", "admin", b"[", 400),
    ("POST", "/api/v1/admin/plans/PLAN202401/dead-letters/replay", "admin", b"{", 400),
]


@pytest.mark.parametrize(("method", "path", "principal", "body", "status"), FOUND)
def test_statuses_found_by_fuzzing_are_documented(
    target: Target, method: str, path: str, principal: str, body: bytes | None, status: int
) -> None:
    response = httpx.request(
        method,
        target.base + path,
        content=body,
        headers={"Authorization": f"Bearer {target.tokens[principal]}"},
        timeout=10,
    )
    assert response.status_code == status, response.text
    assert set(response.json()["error"]) == {"code", "message", "details"}
    assert str(status) in documented_responses(target, method, path)


def documented_responses(target: Target, method: str, path: str) -> dict[str, Any]:
    document = httpx.get(target.base + "/api/v1/openapi.json", timeout=10).json()
    for template, operations in document["paths"].items():
        pattern = template.split("/")
        if len(pattern) == len(path.split("/")) and all(
            p.startswith("{") or p == q for p, q in zip(pattern, path.split("/"), strict=True)
        ):
            found: dict[str, Any] = operations[method.lower()]["responses"]
            return found
    raise AssertionError(f"{method} {path} is not in the document")


def test_generated_requests_get_documented_answers(target: Target) -> None:
    """Last in the module: its admin cases end the exam, its logins may be throttled."""
    figures = fuzz(target.base, target.tokens, KNOWN_IDS, cases=CASES)
    assert not figures.failures, figures.report()
    operations = {op for op, _ in figures.cases}
    assert len(operations) >= 28, figures.report()  # every operation the document names
    assert all(figures.cases[(op, p)] > 0 for op in operations for p in PRINCIPALS)
    # The cases reach past authentication and validation, not only into refusals.
    assert figures.statuses[200] > 100 and figures.statuses[422] > 100, figures.report()
    assert target.alive()
