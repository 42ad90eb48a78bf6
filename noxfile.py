"""Developer tasks. `python3 -m nox` runs every check that CI runs; `nox -s demo` runs the demo."""

from __future__ import annotations

import shlex

import nox

nox.options.sessions = ["lint", "typing", "tests", "tests_lowest", "pyodide"]
nox.options.reuse_venv = "yes"
# A supported Python that is missing fails the run rather than skipping its sessions.
nox.options.error_on_missing_interpreters = True

PACKAGES = ["sdk", "reference_server", "tests", "bench", "web_demo", "noxfile.py"]
# The oldest and the newest supported CPython (3.12 lies between them).
OLDEST, NEWEST = "3.11", "3.13"
# The lowest versions pyproject.toml's ranges allow, for OLDEST on Linux (`nox -s constraints`).
LOWEST = ".ci/lowest-3.11.txt"
# The web demo in Chromium: run once, on OLDEST with the newest dependencies (the slowest
# suite; what it proves of the server the other suites prove on every run).
BROWSER = "tests/browser"
# The chaos suite's short seeded run (tests/chaos/README.md): ~2 minutes of both cores, run
# once like BROWSER; its checker's own tests run everywhere. `nox -s chaos` is the long run.
CHAOS_RUN = "tests/chaos/test_short_run.py"
ONLY_ON_OLDEST = (BROWSER, CHAOS_RUN)


@nox.session(python=False)
def demo(session: nox.Session) -> None:
    """The reference server with the seeds' sample plan, in a venv of its own (.nox/demo-venv)."""
    venv = ".nox/demo-venv"
    session.run("python3", "-m", "venv", venv, external=True)
    # `build` makes the SDK wheel the candidate page loads into Pyodide; `examsync demo`
    # builds it, and runs `npm ci` in web_demo/ for Pyodide itself, when they are missing.
    session.run(
        f"{venv}/bin/python",
        "-m",
        "pip",
        "install",
        "-q",
        "-e",
        ".[server]",
        "build",
        external=True,
    )
    session.run(f"{venv}/bin/examsync", "demo", *session.posargs, external=True)


@nox.session(python=[OLDEST, NEWEST])
def tests(session: nox.Session) -> None:
    """Every pytest test, with the newest dependencies pip resolves.

    SDK core, server on a real Redis and SQLite, integration, and on OLDEST the web demo in
    Chromium (tests/browser: needs `chromium` and npm, which .ci/run installs) and the chaos
    suite's short run.
    """
    session.install("-e", ".[server,dev]")
    default = ["-q"] if session.python == OLDEST else ["-q", *only_on_oldest(session)]
    session.run("pytest", *(session.posargs or default))


@nox.session(python=OLDEST)
def tests_lowest(session: nox.Session) -> None:
    """The same tests, less ONLY_ON_OLDEST, with the lowest versions the ranges allow."""
    session.install("-c", LOWEST, "-e", ".[server,dev]")
    session.run("pytest", *(session.posargs or ["-q", *only_on_oldest(session)]))


def only_on_oldest(session: nox.Session) -> list[str]:
    """pytest arguments that deselect ONLY_ON_OLDEST, counted in pytest's summary line."""
    session.log(f"{', '.join(ONLY_ON_OLDEST)} deselected here: they run in tests-{OLDEST}")
    return [arg for path in ONLY_ON_OLDEST for arg in ("--deselect", path)]


@nox.session(python=OLDEST)
def chaos(session: nox.Session) -> None:
    """The chaos suite's long run, printing its figures; not part of the default run. Posargs
    go to the harness (tests/chaos/README.md), e.g.
    `nox -s chaos -- --clients 20 --edits 200 --faults 30 --seed 7`. Needs root for the full
    disk (a tmpfs under the data dir)."""
    session.install("-e", ".[server,dev]")
    session.run("python", "-m", "chaos.harness", *session.posargs, env={"PYTHONPATH": "tests"})


@nox.session(python=OLDEST)
def constraints(session: nox.Session) -> None:
    """Regenerates LOWEST, the pins of tests_lowest; not part of the default run.

    The lowest version of each direct dependency, and of the rest the newest that fits them on
    the day (uv's lowest-direct).
    """
    session.install("uv")
    session.run(
        "uv", "pip", "compile", "pyproject.toml", "--extra", "server", "--extra", "dev",
        "--resolution", "lowest-direct", "--python-version", OLDEST, "--python-platform", "linux",
        "--custom-compile-command", "python3 -m nox -s constraints", "--output-file", LOWEST,
    )  # fmt: skip


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.12.9")
    session.run("ruff", "check", *PACKAGES)
    session.run("ruff", "format", "--check", *PACKAGES)


@nox.session
def typing(session: nox.Session) -> None:
    session.install("-e", ".[server,dev]")
    session.run("mypy")


@nox.session
def pyodide(session: nox.Session) -> None:
    """The SDK's tests inside Pyodide under Node, on the built wheel (see tests/pyodide/).

    Its venv runs the real reference server the end-to-end tests talk to, and builds the wheel.
    """
    session.install("-e", ".[server,dev]")
    session.run("node", "--version", external=True)
    session.run(
        "bash",
        "tests/pyodide/run.sh",
        *session.posargs,
        external=True,
        env={"PYTHON": f"{session.bin}/python"},
    )


@nox.session(python=OLDEST)
def fuzz(session: nox.Session) -> None:
    """The long fuzz runs (tests/fuzz/README.md); not part of the default run. Each starts its
    own server and prints its figures. Posargs: HTTP cases per operation and principal, then
    sockets for the frame fuzzer: `nox -s fuzz -- 130 3000` (~10,000 requests).
    """
    session.install("-e", ".[server,dev]")
    cases, sockets = (session.posargs + ["130", "3000"][len(session.posargs) :])[:2]
    env = {"PYTHONPATH": "tests"}
    session.run("python", "-m", "fuzz.http_fuzz", "--cases", cases, "--by-operation", env=env)
    session.run("python", "-m", "fuzz.socket_fuzz", "--examples", sockets, env=env)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks that print figures; not part of the default run. Each posarg is a script
    with its arguments: `nox -s bench -- bench/sockets.py "bench/saves.py --processes 1"`."""
    session.install("-e", ".[server,dev]")
    for script in session.posargs or ["bench/lifecycle.py"]:
        session.run("python", *shlex.split(script))
