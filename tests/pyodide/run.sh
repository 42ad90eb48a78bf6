#!/usr/bin/env bash
# Runs the SDK core's tests (tests/sdk) inside Pyodide under Node, offline once prepared.
#
#   bash tests/pyodide/run.sh [pytest args...]     (nox -s pyodide runs this)
#
# Needs node + npm. First run: `npm ci` here (pyodide from the npm registry) and `pip download`
# of the pinned pure-Python wheels in requirements.txt into .cache/wheels (from PyPI). Later
# runs reuse both. Exits non-zero if a test fails, if no test ran, or if a tool is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "run.sh: '$tool' is not on PATH; the Pyodide tests need Node.js (>= 20) and npm" >&2
        exit 127
    fi
done

# A Python with pip, only for downloading wheels: the project venv, else python3.
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then python="$root/.venv/bin/python"; else python=python3; fi
fi

if [[ ! -d "$here/node_modules/pyodide" ]]; then
    (cd "$here" && npm ci --no-audit --no-fund)
fi

wheels="$here/.cache/wheels"
stamp="$wheels/.requirements.txt"
# Re-download when the pins change; the copy of requirements.txt marks a complete download.
if ! cmp -s "$here/requirements.txt" "$stamp" 2>/dev/null; then
    rm -rf "$wheels"
    mkdir -p "$wheels"
    "$python" -m pip download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: --python-version 3.14 --implementation py --abi none \
        --platform any --dest "$wheels" -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$stamp"
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
(cd "$here" && node --experimental-wasm-stack-switching runner.mjs "$root" "$wheels" "$@") 2>&1 \
    | tee "$log"
status="${PIPESTATUS[0]}"
set -e

if [[ "$status" -ne 0 ]]; then
    echo "run.sh: pytest in Pyodide failed (exit $status)" >&2
    exit "$status"
fi
# pytest exits 0 only when tests ran, but guard against a summary with nothing passed.
if ! grep -Eq '[0-9]+ passed' "$log"; then
    echo "run.sh: no test passed in Pyodide" >&2
    exit 1
fi
