"""schemathesis against the OpenAPI document a running server serves, with each principal's token.

Every operation the document describes is called with generated requests (positive: what the
document allows; negative: what it does not) as the candidate, the supervisor and the admin;
half the cases put the seeded plan's ids into the path, so requests reach past "no such plan".
Each response is checked: no 5xx, its status documented for the operation, its content type and
body as documented, and an answer within `REQUEST_TIMEOUT` (else it counts as a hang).

Run on its own (`nox -s fuzz`, or `PYTHONPATH=tests python -m fuzz.http_fuzz --cases 200`) it
starts a server, runs, and prints the figures; tests/fuzz/test_http_fuzz.py runs a bounded
number.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .frame_strategies import deterministic, log_bodies, save_bodies
from .target import KNOWN_IDS, running_target

PRINCIPALS = ("candidate", "supervisor", "admin")
SHA256_HEADER = "X-Content-SHA256"
# Longer than any answer may take: a save waits at most the ack timeout (10 s) for its commit.
REQUEST_TIMEOUT = 15.0
SERVER_ERRORS: list[CheckFunction] = [not_a_server_error]
CONFORMANCE: list[CheckFunction] = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# Package and audio uploads are raw bytes, sent as generated (the server checks what they hold);
# images go as schemathesis' own sample files.
schemathesis.serializer.alias(
    ["application/zip", "audio/webm", "audio/ogg", "audio/wav", "audio/mp4"],
    "application/octet-stream",
)


@dataclass
class Failure:
    principal: str
    operation: str
    kind: str  # "5xx", "nonconformance" or "hang"
    detail: str


@dataclass
class Figures:
    """What a run saw, for the report and the assertions."""

    cases: Counter[tuple[str, str]] = field(default_factory=Counter)  # (operation, principal)
    statuses: Counter[int] = field(default_factory=Counter)
    answers: Counter[tuple[str, int]] = field(default_factory=Counter)  # (operation, status)
    failures: list[Failure] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # what each finding sent
    seconds: float = 0.0

    def count(self, kind: str) -> int:
        return sum(1 for f in self.failures if f.kind == kind)

    def report(self) -> str:
        lines = [f"{sum(self.cases.values())} cases in {self.seconds:.0f} s"]
        width = max((len(op) for op, _ in self.cases), default=0)
        operations = sorted({op for op, _ in self.cases})
        lines.append(f"  {'operation':<{width}}  " + "  ".join(f"{p:>10}" for p in PRINCIPALS))
        for op in operations:
            counts = "  ".join(f"{self.cases[(op, p)]:>10}" for p in PRINCIPALS)
            lines.append(f"  {op:<{width}}  {counts}")
        seen = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        lines.append(f"statuses seen: {seen}")
        lines.append(
            f"5xx: {self.count('5xx')}  non-conformance: {self.count('nonconformance')}"
            f"  hangs: {self.count('hang')}"
        )
        distinct = Counter(
            f"{f.kind} as {f.principal}: {f.operation}: {f.detail}" for f in self.failures
        )
        lines += [f"  {n} x {text}" for text, n in distinct.most_common(30)]
        lines += [f"  sent: {sent}" for sent in self.requests[:5]]
        return "\n".join(lines)

    def statuses_by_operation(self) -> str:
        lines = []
        for op in sorted({op for op, _ in self.answers}):
            seen = ", ".join(f"{s}: {n}" for (o, s), n in sorted(self.answers.items()) if o == op)
            lines.append(f"  {op}: {seen}")
        return "\n".join(lines)


def fuzz(
    base: str,
    tokens: dict[str, str],
    known_ids: dict[str, str],
    *,
    cases: int,
    seed: int = 0,
    operations: Callable[[str], bool] = lambda label: True,
) -> Figures:
    """`cases` requests per operation and principal against the server at `base`."""
    schema = schemathesis.openapi.from_url(base + "/api/v1/openapi.json")
    figures = Figures()
    started = time.monotonic()
    with requests.Session() as session:
        for principal in PRINCIPALS:
            for result in schema.get_all_operations():
                if isinstance(result, Err):  # the document itself is wrong: no run hides that
                    raise result.err()
                operation = result.ok()
                if not operations(operation.label):
                    continue
                _fuzz_operation(
                    operation, principal, tokens[principal], known_ids, base, session,
                    cases, seed, figures,
                )  # fmt: skip
    figures.seconds = time.monotonic() - started
    return figures


def _fuzz_operation(
    operation: Any,
    principal: str,
    token: str,
    known_ids: dict[str, str],
    base: str,
    session: requests.Session,
    cases: int,
    seed: int,
    figures: Figures,
) -> None:
    names = {p.name for p in operation.path_parameters}
    known = {name: value for name, value in known_ids.items() if name in names}
    strategies = [
        operation.as_strategy(generation_mode=mode, **extra)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        for extra in ([{}, {"path_parameters": known}] if known else [{}])
    ]
    headers = {"Authorization": f"Bearer {token}"}
    label = operation.label

    @deterministic(cases, seed)
    @given(case=st.one_of(strategies), seal=st.booleans())
    def one(case: schemathesis.Case[Any], seal: bool) -> None:
        figures.cases[(label, principal)] += 1
        request = case.as_transport_kwargs(base_url=base, headers=headers)
        if seal:
            _seal(request)
        try:
            response = session.request(**request, timeout=REQUEST_TIMEOUT)
        except requests.Timeout:
            figures.failures.append(Failure(principal, label, "hang", _described(request)))
            return
        figures.statuses[response.status_code] += 1
        figures.answers[(label, response.status_code)] += 1
        for kind, checks in (("5xx", SERVER_ERRORS), ("nonconformance", CONFORMANCE)):
            try:
                case.validate_response(response, checks=checks, headers=headers)
            except FailureGroup as exc:
                detail = "; ".join(_titles(exc.exceptions)) + f" ({response.status_code})"
                figures.failures.append(Failure(principal, label, kind, detail))
                figures.requests.append(f"{detail}: {_described(request)}")

    one()


# Routes whose body the document describes only as an object: Hypothesis bodies go deeper.
BODY_ROUTES: dict[str, tuple[st.SearchStrategy[bytes], Callable[[bytes, Any], str]]] = {
    "/api/v1/answers": (save_bodies, lambda body, answer: _results_match(body, answer)),
    "/api/v1/logs": (log_bodies, lambda body, answer: ""),
}


def fuzz_bodies(base: str, token: str, *, cases: int, seed: int = 0) -> Figures:
    """`cases` bodies per route of BODY_ROUTES as the candidate (frame_strategies: valid ones,
    the same perturbed, malformed JSON), uploads sealed with their SHA-256. Each answer must be
    a status the route documents, never 5xx; an error has the error shape; a save's ack holds a
    result per answer sent."""
    document = requests.get(base + "/api/v1/openapi.json", timeout=10).json()
    figures = Figures()
    started = time.monotonic()
    for path, (bodies, check_ok) in BODY_ROUTES.items():
        documented = {int(s) for s in document["paths"][path]["post"]["responses"]}
        route = _BodyRoute(base + path, f"POST {path} (Hypothesis bodies)", documented, check_ok)
        _fuzz_body_route(route, token, bodies, cases, seed, figures)
    figures.seconds = time.monotonic() - started
    return figures


@dataclass(frozen=True)
class _BodyRoute:
    url: str
    label: str
    documented: set[int]
    check_ok: Callable[[bytes, Any], str]  # a problem with a 200 answer, or ""


def _fuzz_body_route(
    route: _BodyRoute,
    token: str,
    bodies: st.SearchStrategy[bytes],
    cases: int,
    seed: int,
    figures: Figures,
) -> None:
    @deterministic(cases, seed)
    @given(body=bodies)
    def one(body: bytes) -> None:
        figures.cases[(route.label, "candidate")] += 1
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            SHA256_HEADER: hashlib.sha256(body).hexdigest(),
        }
        try:
            response = requests.post(route.url, data=body, headers=headers, timeout=REQUEST_TIMEOUT)
        except requests.Timeout:
            figures.failures.append(Failure("candidate", route.label, "hang", repr(body[:200])))
            return
        status = response.status_code
        figures.statuses[status] += 1
        figures.answers[(route.label, status)] += 1
        problem = _answer_problem(response, route.documented)
        if not problem and status == 200:
            problem = route.check_ok(body, response.json())
        if problem:
            kind = "5xx" if status >= 500 else "nonconformance"
            detail = f"{problem} ({status}) for {body[:200]!r}"
            figures.failures.append(Failure("candidate", route.label, kind, detail))

    one()


def _answer_problem(response: requests.Response, documented: set[int]) -> str:
    status = response.status_code
    if status not in documented or status >= 500:
        return "undocumented status"
    if status < 400:
        return ""
    answer = response.json()
    error = answer.get("error") if isinstance(answer, dict) else None
    ok = isinstance(error, dict) and {"code", "message", "details"} <= set(error)
    return "" if ok else f"not an error body: {str(answer)[:200]}"


def _results_match(body: bytes, answer: Any) -> str:
    sent = json.loads(body)["answers"]
    if set(answer.get("results", {})) != set(sent):
        return f"results for {sorted(answer.get('results', {}))}, sent {sorted(sent)}"
    return ""


def _seal(request: dict[str, Any]) -> None:
    """An upload's X-Content-SHA256 made right, so the case gets past the checksum check into
    what reads the body (a zip, an image, a log batch)."""
    if SHA256_HEADER not in request["headers"]:
        return
    if "json" in request:
        request["data"] = json.dumps(request.pop("json")).encode()
    data = request.get("data") or b""
    request["headers"][SHA256_HEADER] = hashlib.sha256(data).hexdigest()


def _titles(failures: Iterable[Any]) -> list[str]:
    return [str(getattr(f, "title", f)) for f in failures]


def _described(request: dict[str, Any]) -> str:
    """What was sent, to reproduce a finding (the token left out)."""
    headers = {k: v for k, v in request["headers"].items() if k.lower() != "authorization"}
    body = request.get("data", request.get("json"))
    return (
        f"{request['method']} {request['url']} params={request.get('params')} headers={headers}"
        f" body={str(body)[:300]}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cases", type=int, default=100, help="per operation and principal; 10x bodies"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--by-operation", action="store_true", help="statuses per operation")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, running_target(Path(tmp) / "data") as target:
        # Saves first: the admin's cases below end the exam.
        saves = fuzz_bodies(
            target.base, target.tokens["candidate"], cases=args.cases * 10, seed=args.seed
        )
        figures = fuzz(target.base, target.tokens, KNOWN_IDS, cases=args.cases, seed=args.seed)
        alive = target.alive()
    print(figures.report())
    print(saves.report())
    if args.by_operation:
        print("statuses by operation:\n" + figures.statuses_by_operation())
    print(f"server alive afterwards: {alive}")
    return 0 if alive and not figures.failures and not saves.failures else 1


if __name__ == "__main__":
    sys.exit(main())
