"""What the web demo serves besides its own files: Pyodide from npm and the SDK wheel.

Both are made from this checkout, on this machine, so the pages fetch nothing from outside:

- Pyodide comes from the npm package pinned in ``web_demo/package-lock.json``; ``npm ci`` runs
  when ``node_modules`` was not installed from that exact lock (a copy of the lock marks a
  complete install, as tests/pyodide/run.sh does).
- The SDK wheel is ``python -m build --wheel`` of this checkout (py3-none-any: the SDK is pure
  Python, and pyodide-build would need the internet). It is cached under
  ``web_demo/.cache/wheels/<digest of the sources>/``, so a restart rebuilds only after the
  sources changed, and the URL it is served at changes with it (caches never go stale).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import StartupError

log = logging.getLogger(__name__)

AUTO = "auto"
OFF = "off"
# The checkout this module runs from: reference_server/examsync_server/web/assets.py.
CHECKOUT = Path(__file__).resolve().parents[3]
_WHEEL_SOURCES = ("pyproject.toml", "README.md", "sdk", "reference_server")


@dataclass(frozen=True, slots=True)
class WebAssets:
    """Where the demo's files are; `wheel` and `pyodide_dir` exist once `prepare` ran."""

    web_dir: Path
    source_root: Path

    @property
    def pyodide_dir(self) -> Path:
        return self.web_dir / "node_modules" / "pyodide"

    @property
    def pyodide_version(self) -> str:
        try:
            meta = json.loads((self.pyodide_dir / "package.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return ""
        return str(meta.get("version", ""))

    @property
    def wheel_cache(self) -> Path:
        return self.web_dir / ".cache" / "wheels"

    def source_digest(self) -> str:
        """SHA-256 (first 16 hex digits) of every file that goes into the wheel."""
        digest = hashlib.sha256()
        for name in _WHEEL_SOURCES:
            top = self.source_root / name
            paths = [top] if top.is_file() else sorted(top.rglob("*"))
            for path in paths:
                if path.is_file() and "__pycache__" not in path.parts:
                    digest.update(str(path.relative_to(self.source_root)).encode() + b"\0")
                    digest.update(path.read_bytes() + b"\0")
        return digest.hexdigest()[:16]

    def wheel(self) -> Path | None:
        """The wheel built from the current sources, if there is one."""
        found = sorted(
            (self.wheel_cache / self.source_digest()).glob("examsync-*-py3-none-any.whl")
        )
        return found[0] if found else None


def locate(web_dir: str) -> WebAssets | None:
    """The demo's assets for the `web_dir` setting: "" or "off" (none), "auto", or a path."""
    if web_dir in ("", OFF):
        return None
    path = CHECKOUT / "web_demo" if web_dir == AUTO else Path(web_dir).resolve()
    if not (path / "candidate.html").is_file():
        if web_dir == AUTO:
            log.warning("no web_demo/ next to this installation; serving the API only")
            return None
        raise StartupError(f"{path} holds no web demo (candidate.html is missing)")
    # The wheel is built from the checkout the pages belong to.
    return WebAssets(path, path.parent)


def prepare(assets: WebAssets) -> None:
    """Install Pyodide and build the SDK wheel when they are missing or out of date."""
    _install_pyodide(assets)
    if assets.wheel() is None:
        _build_wheel(assets)


def _install_pyodide(assets: WebAssets) -> None:
    lock = assets.web_dir / "package-lock.json"
    stamp = assets.web_dir / "node_modules" / ".installed-lock.json"
    if stamp.is_file() and stamp.read_bytes() == lock.read_bytes():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise StartupError(
            "the web demo serves Pyodide from npm, and npm is not on PATH: install Node.js and"
            " npm (Debian: apt-get install nodejs npm), or serve without it (--web-dir off)"
        )
    log.info("installing Pyodide (npm ci in %s)", assets.web_dir)
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=assets.web_dir,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise StartupError(f"npm ci in {assets.web_dir} failed:\n{done.stderr[-2000:]}")
    shutil.copyfile(lock, stamp)


def _build_wheel(assets: WebAssets) -> None:
    target = assets.wheel_cache / assets.source_digest()
    log.info("building the SDK wheel for the browser into %s", target)
    assets.wheel_cache.mkdir(parents=True, exist_ok=True)
    # Built aside, then renamed into place: a server starting meanwhile sees all or nothing.
    with tempfile.TemporaryDirectory(dir=assets.wheel_cache) as tmp:
        done = subprocess.run(
            [sys.executable, "-m", "build", "--wheel", "--outdir", tmp, str(assets.source_root)],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
        if done.returncode != 0:
            hint = " (pip install build)" if "No module named build" in done.stderr else ""
            raise StartupError(
                f"python -m build --wheel failed{hint}:\n{(done.stderr or done.stdout)[-2000:]}"
            )
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # not another process's build that won the rename
                raise
        else:
            os.mkdir(tmp)  # for TemporaryDirectory's cleanup
    _prune(assets.wheel_cache, keep=target)


def _prune(cache: Path, keep: Path, newest: int = 3) -> None:
    """Drop all but the newest few builds: a server still running older sources keeps its own."""
    builds = sorted(
        (p for p in cache.iterdir() if p.is_dir() and p != keep and not p.name.startswith("tmp")),
        key=lambda p: p.stat().st_mtime,
    )
    for old in builds[: max(0, len(builds) - (newest - 1))]:
        shutil.rmtree(old, ignore_errors=True)
