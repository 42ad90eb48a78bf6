#!/usr/bin/env bash
# Runs the SDK's tests inside Pyodide under Node: the core's (tests/sdk) and the Pyodide
# adapter's (tests/pyodide/suite), against the examsync wheel built from this tree.
#
#   bash tests/pyodide/run.sh [pytest args...]     (nox -s pyodide runs this)
#   bash tests/pyodide/run.sh -q tests/pyodide_suite/test_storage.py   (paths as seen inside)
#
# Needs node + npm. First run: `npm ci` here (pyodide, fake-indexeddb and ws from the npm
# registry) and `pip download` of the pinned pure-Python wheels in requirements.txt into
# .cache/wheels (from PyPI). Later runs reuse both; every run builds the SDK wheel (pip, with
# hatchling from its cache). Exits non-zero if a test fails, if no test ran, or if a tool is
# missing.
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

# Reinstall when the lock file changes; a copy of it marks a complete install.
npm_stamp="$here/node_modules/.installed-lock.json"
if ! cmp -s "$here/package-lock.json" "$npm_stamp" 2>/dev/null; then
    (cd "$here" && npm ci --no-audit --no-fund)
    cp "$here/package-lock.json" "$npm_stamp"
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

# The SDK as users get it: a py3-none-any wheel (loading it tests the packaging too).
dist="$here/.cache/dist"
rm -rf "$dist"
"$python" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$dist" "$root"
sdk_wheel="$(ls "$dist"/examsync-*-py3-none-any.whl)"

# The real reference server (CPython, its private Redis) for the end-to-end tests: it prints
# one JSON line, then runs until its stdin closes. Not starting is a failure, never a skip.
work="$(mktemp -d)"
log="$work/pytest.log"
coproc SERVER { "$python" "$here/reference_server.py" "$work/data" 2>"$work/server.err"; }
server_pid="$SERVER_PID"
cleanup() {
    # EOF on its stdin makes it stop the server (and that server's Redis), then exit.
    # (SERVER is gone when the server already exited.)
    if [[ -n "${SERVER[1]:-}" ]]; then exec {SERVER[1]}>&-; fi
    for _ in $(seq 150); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
    kill "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
if ! read -r -t 90 e2e <&"${SERVER[0]}"; then
    echo "run.sh: the reference server did not start (needs the [server] extra):" >&2
    cat "$work/server.err" "$work"/server-*.log >&2 2>/dev/null || true
    exit 1
fi
export EXAMSYNC_E2E="$e2e"

set +e
(cd "$here" && node --experimental-wasm-stack-switching runner.mjs "$root" "$wheels" "$sdk_wheel" "$@") 2>&1 \
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
