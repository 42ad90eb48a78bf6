"""A chaos run, end to end: start the cluster, sign the devices in, let them type while the
faults strike at their seeded times, heal everything, flush, read the server back, check.

    PYTHONPATH=tests python -m chaos.harness --clients 8 --edits 60 --faults 20 --seed 7

(``nox -s chaos -- ...`` runs the same.) It prints the seed and the schedule first (the same
seed gives the same schedule), then the figures (:func:`figures`). The exit status is 0 when
the checker found nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import queue
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from examsync_server.demo.sample import sample_package, sample_plan

from .checker import Verdict, check
from .cluster import DeviceNetwork, RedisNode, ServerNode, SmallDisk
from .faults import KINDS, Injected, Injector, Planned, schedule
from .history import (
    Ack,
    Answer,
    AnswerKey,
    Edit,
    HistoryRow,
    Probe,
    Record,
    ServerState,
    parse_lines,
)

PLAN_ID, EXAM_CODE = "PLAN202401", "EXAM202401"
CLIENT_SCRIPT = Path(__file__).with_name("client.py")
T = TypeVar("T")
# After a fault is over and the server healthy, the next one waits at least this long.
SETTLE_SECONDS = 1.0
# A violation is put down to the faults that began this long before it was seen.
BLAME_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class Options:
    clients: int = 4  # devices (SDK processes)
    edits: int = 40  # per device, at least: each types on until the last fault is over
    faults: int = 6
    seed: int = 1
    kinds: tuple[str, ...] = KINDS
    pace: float = 0.25  # mean seconds between a device's edits
    device_policy: str = "merge"
    # Every candidate up to this many has two devices (the rest one each).
    two_device_candidates: int = 1
    probe_every: float = 0.5  # seconds between restores during the run


@dataclass
class Report:
    options: Options
    schedule: list[Planned]
    injected: list[Injected]
    verdict: Verdict
    history: list[Record]
    left_out: dict[str, str] = field(default_factory=dict)  # kind -> why
    seconds: float = 0.0
    probes: int = 0  # restores during the run that answered
    probes_failed: Counter[str] = field(default_factory=Counter)  # and why the others did not


def devices_of(options: Options) -> list[tuple[str, int]]:
    """(device name, candidate index) of every device: two each for the first candidates."""
    devices: list[tuple[str, int]] = []
    candidate = 0
    while len(devices) < options.clients:
        pair = candidate < options.two_device_candidates and options.clients - len(devices) >= 2
        for letter in "ab" if pair else "a":
            devices.append((f"c{candidate:02d}{letter}", candidate))
        candidate += 1
    return devices


class Device:
    """An SDK client process and the lines it says."""

    def __init__(self, name: str, settings: dict[str, Any], log: Path) -> None:
        self.name = name
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, str(CLIENT_SCRIPT), json.dumps(settings)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self._said: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._said.put(json.loads(line))

    def expect(self, step: str, timeout: float) -> dict[str, Any]:
        try:
            said = self._said.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.name}: no {step!r} in {timeout} s") from None
        assert said["step"] == step, f"{self.name}: expected {step!r}, got {said}"
        return said

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(10)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
        self._log.close()


def prepare_plan(server: ServerNode, candidates: int, device_policy: str) -> None:
    assert server.server is not None
    imported = sample_plan(candidates=candidates)
    imported["exam_plan"]["device_policy"] = device_policy
    steps = [
        ("PUT", f"/api/v1/admin/plans/{PLAN_ID}", {"json": imported}),
        ("PUT", f"/api/v1/admin/plans/{PLAN_ID}/package", _package_upload()),
        ("POST", f"/api/v1/admin/plans/{PLAN_ID}/prepare", {}),
        ("POST", f"/api/v1/admin/plans/{PLAN_ID}/start", {}),
    ]
    for method, path, kwargs in steps:
        response = server.server.admin(method, path, **kwargs)
        assert response.status_code in (200, 201), f"{path}: {response.text}"


def _package_upload() -> dict[str, Any]:
    package = sample_package()
    return {
        "content": package,
        "headers": {"X-Content-SHA256": hashlib.sha256(package).hexdigest()},
    }


def credentials(candidate: int) -> tuple[str, str]:
    """The sample plan's candidate id and auth code of a candidate index."""
    return f"CAND2023{candidate + 1:02d}", f"AUTH{1234 + candidate}"


def read_durable(data_dir: Path) -> tuple[dict[AnswerKey, Answer], tuple[HistoryRow, ...]]:
    """The durable store: the `answer` view and `answer_history` of the run's exam."""
    uri = f"file:{data_dir / 'examsync.sqlite3'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as db:
        kept = db.execute(
            "SELECT candidate_id, quiz_code, value, version FROM answer"
            " WHERE plan_id = ? AND exam_code = ?",
            (PLAN_ID, EXAM_CODE),
        ).fetchall()
        rows = db.execute(
            "SELECT candidate_id, quiz_code, version, value_sha256, result FROM answer_history"
            " WHERE plan_id = ? AND exam_code = ?",
            (PLAN_ID, EXAM_CODE),
        ).fetchall()
    return (
        {(c, q): (value, version) for c, q, value, version in kept},
        tuple(HistoryRow(*row) for row in rows),
    )


class Restorer:
    """Restores through the API as each candidate (`GET /api/v1/answers/{exam}`), signed in
    once per candidate without taking the exam over (``activate: false``)."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=10)
        self.tokens: dict[int, str] = {}

    def restore(self, candidate: int) -> Probe | str:
        """What the server returns now, or why not (a status or an exception's name: a
        fault)."""
        candidate_id, auth_code = credentials(candidate)
        asked = time.time()
        try:
            if candidate not in self.tokens:
                session = self.http.post(
                    "/api/v1/sessions",
                    json={
                        "planId": PLAN_ID,
                        "candidateId": candidate_id,
                        "authCode": auth_code,
                        "activate": False,
                    },
                )
                if session.status_code not in (200, 201):
                    return f"sign-in {session.status_code}"
                self.tokens[candidate] = session.json()["token"]
            restored = self.http.get(
                f"/api/v1/answers/{EXAM_CODE}",
                headers={"Authorization": f"Bearer {self.tokens[candidate]}"},
            )
        except httpx.HTTPError as exc:
            return type(exc).__name__
        if restored.status_code != 200:
            return f"restore {restored.status_code}"
        body = restored.json()
        answers = {q: (a["value"], int(a["version"])) for q, a in body["answers"].items()}
        return Probe(candidate_id, asked, answers, tuple(body.get("missing") or ()))

    def close(self) -> None:
        self.http.close()


class Prober:
    """Restores a seeded random candidate every ``every`` seconds while the faults strike,
    so that a restore served from a Redis that lost data is seen (the checker compares each
    with the acks received before it was asked)."""

    def __init__(self, restorer: Restorer, candidates: int, seed: int, every: float) -> None:
        self.restorer, self.candidates, self.every = restorer, candidates, every
        self.rng = random.Random(seed)
        self.probes: list[Probe] = []
        self.failed: Counter[str] = Counter()  # why a restore was not answered
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            probe = self.restorer.restore(self.rng.randrange(self.candidates))
            if isinstance(probe, str):
                self.failed[probe] += 1
            else:
                self.probes.append(probe)

    def stop(self) -> list[Probe]:
        self._stop.set()
        self._thread.join(30)
        return self.probes


def run(options: Options, root: Path, out: Any = sys.stdout) -> Report:
    """One chaos run under ``root`` (kept for reading afterwards)."""
    began = time.monotonic()
    devices = devices_of(options)
    candidates = max(c for _, c in devices) + 1
    span = options.edits * options.pace
    planned = schedule(options.seed, options.kinds, options.faults, span)
    print(f"chaos seed {options.seed}: {options}", file=out)
    with ExitStack() as stack:
        redis_node = RedisNode(root)
        redis_node.start()
        stack.callback(redis_node.stop)
        server = ServerNode(root, redis_node.url)
        disk = SmallDisk(server.data_dir)
        left_out = {}
        if "disk_full" in options.kinds:
            if disk.mount():
                stack.callback(disk.unmount)
            else:
                left_out["disk_full"] = f"no tmpfs for the data dir: {disk.error}"
        planned = [p for p in planned if p.kind not in left_out]
        for p in planned:
            print(f"  at {p.at:6.2f} s  {p.kind:<15} hold {p.hold:.2f} s  pick {p.pick}", file=out)
        for kind, why in left_out.items():
            print(f"  LEFT OUT {kind}: {why}", file=out)
        if "aof_rollback" in options.kinds:
            redis_node.keep_copies()
        server.start()
        stack.callback(server.stop)
        prepare_plan(server, candidates, options.device_policy)

        histories = root / "history"
        histories.mkdir()
        (root / "devices").mkdir()
        networks: list[DeviceNetwork] = []
        running: list[Device] = []
        stack.callback(_each, running, Device.stop)
        stack.callback(_each, networks, DeviceNetwork.close)
        pairs = Counter(c for _, c in devices)
        for i, (name, candidate) in enumerate(devices):
            network = DeviceNetwork(server, f"127.0.0.{10 + i}")
            networks.append(network)
            candidate_id, auth_code = credentials(candidate)
            settings = {
                "client": name,
                "base": network.url,
                "store": str(root / "devices" / name),
                "candidate": candidate_id,
                "auth": auth_code,
                "edits": options.edits,
                "pace": options.pace,
                "seed": options.seed * 1000 + i,
                "history": str(histories / f"{name}.jsonl"),
                "restore_at_end": pairs[candidate] > 1,
            }
            device = Device(name, settings, root / "devices" / f"{name}.log")
            running.append(device)
            device.expect("ready", 60)
        for device in running:
            device.send("go")

        restorer = Restorer(server.base)
        stack.callback(restorer.close)
        prober = Prober(restorer, candidates, options.seed, options.probe_every)
        stack.callback(prober.stop)
        injector = Injector(redis_node, server, disk, networks)
        injected = []
        start = time.monotonic()
        settled = start
        for fault in planned:
            # At its time, but never before the last one settled: a fault that ran long (a
            # restart on busy cores) must not bunch the next ones up behind it.
            time.sleep(max(0.0, start + fault.at - time.monotonic(), settled - time.monotonic()))
            done = injector.inject(fault)
            injected.append(done)
            server.wait_healthy()
            settled = time.monotonic() + SETTLE_SECONDS
            print(f"  {time.monotonic() - start:6.2f} s  {fault.kind} done {done.note}", file=out)
        time.sleep(max(0.0, start + span - time.monotonic(), settled - time.monotonic()))
        probes = prober.stop()
        for device in running:
            device.send("stop")
        for device in running:
            device.expect("edited", 60)
        server.wait_healthy()
        for device in running:
            device.send("flush")
        for device in running:
            said = device.expect("flushed", 120)
            if not said["ok"]:
                print(f"  {device.name} not synced after its flush: {said['state']}", file=out)
        for device in running:
            device.send("final")
            device.expect("done", 60)

        kept, rows = read_durable(server.data_dir)
        restored: dict[str, Mapping[str, Answer]] = {}
        for candidate in range(candidates):
            final = restorer.restore(candidate)
            assert not isinstance(final, str), f"the final restore failed: {final}"
            restored[final.candidate] = final.answers
    history = [r for path in sorted(histories.glob("*.jsonl")) for r in _read(path)]
    verdict = check(history, ServerState(kept, rows, restored, tuple(probes)))
    report = Report(options, planned, injected, verdict, history, left_out)
    report.seconds = time.monotonic() - began
    report.probes, report.probes_failed = len(probes), prober.failed
    return report


def _each(items: list[T], stop: Callable[[T], None]) -> None:
    for item in items:
        stop(item)


def _read(path: Path) -> list[Record]:
    with path.open(encoding="utf-8") as lines:
        return parse_lines(lines)


def recovery_seconds(report: Report) -> dict[str, list[float]]:
    """Per fault kind, the seconds from the fault's end (healed, restarted, resumed; a kill's
    moment for a kill the parent mends) to the next ack a device it hit received."""
    devices = [name for name, _ in devices_of(report.options)]
    acks: dict[str, list[float]] = defaultdict(list)
    for record in report.history:
        if isinstance(record, Ack):
            acks[record.client].append(record.t)
    found: dict[str, list[float]] = defaultdict(list)
    for fault in report.injected:
        hit = devices if fault.devices is None else [devices[i] for i in fault.devices]
        mended = fault.started if fault.planned.kind.startswith("kill_") else fault.mended
        if fault.planned.kind in ("kill_server", "kill_redis"):
            mended = fault.mended
        after = [t for name in hit for t in acks[name] if t >= mended]
        if after:
            found[fault.planned.kind].append(min(after) - mended)
    return found


def figures(report: Report) -> list[str]:
    """The run's figures, one a line."""
    verdict = report.verdict
    edits = sum(isinstance(r, Edit) for r in report.history)
    kinds = Counter(f.planned.kind for f in report.injected)
    recovery = recovery_seconds(report)
    lines = [
        f"seed {report.options.seed}, {report.seconds:.0f} s, "
        f"device policy {report.options.device_policy}",
        f"clients {report.options.clients} "
        f"({report.options.two_device_candidates} candidates with two devices)",
        f"edits {edits}",
        f"acks (accepted) {verdict.acks}",
        f"restores during the run {report.probes} answered, {_not_answered(report)}",
        f"faults {len(report.injected)}: {_counted(kinds)}",
    ]
    lines += [f"{name} {len(found)}" for name, found in verdict.problems().items()]
    lines.append(
        "time to recover, median per kind: "
        + ", ".join(
            f"{kind} {statistics.median(recovery[kind]):.2f} s"
            if recovery.get(kind)
            else f"{kind} n/a"
            for kind in sorted(kinds)
        )
    )
    for kind, why in report.left_out.items():
        lines.append(f"left out: {kind} ({why})")
    followed = Counter(
        _last_fault(report, v.at) for found in verdict.problems().values() for v in found
    )
    if followed:
        lines.append(
            f"violations by the faults begun {BLAME_SECONDS:.0f} s before: {_counted(followed)}"
        )
    for name, found in verdict.problems().items():
        for violation in found[:10]:
            lines.append(f"  {name}: {violation}{_after_fault(report, violation.at)}")
        if len(found) > 10:
            lines.append(f"  {name}: ... {len(found) - 10} more")
    return lines


def _not_answered(report: Report) -> str:
    failed = report.probes_failed
    return f"{failed.total()} not ({_counted(failed)})" if failed else "0 not"


def _counted(counts: Counter[str]) -> str:
    return ", ".join(f"{what} {n}" for what, n in sorted(counts.items()))


def _faults_before(report: Report, at: float | None) -> list[Injected]:
    """The faults begun up to BLAME_SECONDS before ``at`` (none for a violation seen only at
    the end): the likely causes of what was seen then."""
    if at is None:
        return []
    return [f for f in report.injected if at - BLAME_SECONDS <= f.started <= at]


def _last_fault(report: Report, at: float | None) -> str:
    return "+".join(f.planned.kind for f in _faults_before(report, at)) or "-"


def _after_fault(report: Report, at: float | None) -> str:
    recent = [
        f"{at - f.started:.1f} s after {f.planned.kind} at {f.planned.at} s"
        for f in _faults_before(report, at)
        if at is not None
    ]
    return f" [{'; '.join(recent)}]" if recent else ""


def parse_args(argv: Sequence[str]) -> tuple[Options, Path | None]:
    parser = argparse.ArgumentParser(prog="nox -s chaos --", description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--edits", type=int, default=200)
    parser.add_argument("--faults", type=int, default=30)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--pace", type=float, default=0.25)
    parser.add_argument("--probe-every", type=float, default=0.5)
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated fault kinds")
    parser.add_argument("--device-policy", choices=("merge", "single"), default="merge")
    parser.add_argument("--two-device-candidates", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="run here and keep the files")
    args = parser.parse_args(argv)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    options = Options(
        clients=args.clients,
        edits=args.edits,
        faults=args.faults,
        seed=args.seed,
        kinds=kinds,
        pace=args.pace,
        device_policy=args.device_policy,
        two_device_candidates=args.two_device_candidates,
        probe_every=args.probe_every,
    )
    return options, args.keep


def main(argv: Sequence[str] | None = None) -> int:
    # A cut cancels the proxies' connection tasks; asyncio 3.11 logs each as an error.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    options, keep = parse_args(sys.argv[1:] if argv is None else argv)
    if keep is not None:
        keep.mkdir(parents=True)
        report = run(options, keep)
    else:
        with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
            report = run(options, Path(tmp))
    print("\n".join(figures(report)))
    return 0 if report.verdict.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
