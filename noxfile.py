"""Developer tasks. `python3 -m nox` runs every check that CI runs; `nox -s demo` runs the demo."""

from __future__ import annotations

import shlex

import nox

nox.options.sessions = ["lint", "typing", "tests", "pyodide"]
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True

PACKAGES = ["sdk", "reference_server", "tests", "bench", "web_demo", "noxfile.py"]


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


@nox.session
def tests(session: nox.Session) -> None:
    """Every pytest test: SDK core, server on a real Redis and SQLite, integration, and the web
    demo in Chromium (tests/browser: needs `chromium` and npm, which .ci/run installs)."""
    session.install("-e", ".[server,dev]")
    session.run("pytest", *(session.posargs or ["-q"]))


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
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


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks that print figures; not part of the default run. Each posarg is a script
    with its arguments: `nox -s bench -- bench/sockets.py "bench/saves.py --processes 1"`."""
    session.install("-e", ".[server,dev]")
    for script in session.posargs or ["bench/lifecycle.py"]:
        session.run("python", *shlex.split(script))
