// Runs the SDK's tests inside Pyodide under Node, offline: the core's (tests/sdk) and the
// Pyodide adapter's (tests/pyodide/suite), against the SDK as the built wheel installs it.
//
// Usage: node --experimental-wasm-stack-switching runner.mjs REPO_ROOT WHEEL_DIR SDK_WHEEL
//        [pytest args...]
//
// WHEEL_DIR holds pytest and its dependencies; SDK_WHEEL is the examsync wheel just built, so
// packaging is tested too (idb.js must be in it). The tests are copied into Pyodide's
// in-memory file system, so nothing the run writes lands in the tree, and only their own
// config is seen (not tests/conftest.py or pyproject.toml, whose options name CPython-only
// plugins such as pytest-asyncio).
import { readFileSync, readdirSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { loadPyodide } from "pyodide";
import * as host from "./host.mjs";

const [repoRoot, wheelDir, sdkWheel, ...pytestArgs] = process.argv.slice(2);
if (!repoRoot || !wheelDir || !sdkWheel) {
  console.error("usage: runner.mjs REPO_ROOT WHEEL_DIR SDK_WHEEL [pytest args...]");
  process.exit(2);
}

const urls = await host.start();
const pyodide = await loadPyodide();
host.installWebLocks();
const FS = pyodide.FS;

function copyTree(src, dest) {
  FS.mkdirTree(dest);
  for (const name of readdirSync(src)) {
    if (name === "__pycache__" || name.startsWith(".")) continue;
    const from = join(src, name);
    const to = `${dest}/${name}`;
    if (statSync(from).isDirectory()) copyTree(from, to);
    else FS.writeFile(to, readFileSync(from));
  }
}

const sitePackages = pyodide.runPython("import site; site.getsitepackages()[0]");
const wheels = readdirSync(wheelDir)
  .filter((n) => n.endsWith(".whl"))
  .map((n) => join(wheelDir, n));
if (wheels.length === 0) {
  console.error(`no wheels in ${wheelDir}`);
  process.exit(2);
}
for (const path of [...wheels, sdkWheel]) {
  // A Node Buffer is refused by unpackArchive: hand it a plain Uint8Array.
  const bytes = new Uint8Array(readFileSync(path));
  pyodide.unpackArchive(bytes, "wheel", { extractDir: sitePackages });
}

copyTree(join(repoRoot, "tests", "sdk"), "/work/tests/sdk");
copyTree(join(repoRoot, "tests", "pyodide", "suite"), "/work/tests/pyodide_suite");
// The CPython config lives in pyproject.toml; this mirrors the parts that matter here.
FS.writeFile(
  "/work/pytest.ini",
  "[pytest]\naddopts = --strict-markers -ra\nfilterwarnings = error\n",
);

// The reference server run.sh started (URLs, credentials), as JSON text.
const e2eJson = process.env.EXAMSYNC_E2E ?? "";
pyodide.registerJsModule("examsync_test_host", { ...host, ...urls, e2eJson });
pyodide.globals.set("PYTEST_ARGS", pyodide.toPy(pytestArgs));
pyodide.globals.set("SDK_WHEEL", basename(sdkWheel));
let code;
try {
  code = await pyodide.runPythonAsync(`
import os, sys
sys.dont_write_bytecode = True
os.chdir("/work")
import examsync, pytest
print(f"Pyodide: Python {sys.version.split()[0]} on {sys.platform}; SDK from {SDK_WHEEL}",
      flush=True)
args = list(PYTEST_ARGS or ["-q"])
# Paths given (tests/...) replace the default pair.
paths = [] if any(a.startswith("tests/") for a in args) else ["tests/sdk", "tests/pyodide_suite"]
int(pytest.main(["-p", "no:cacheprovider", *args, *paths]))
`);
} finally {
  await host.stop();
}
process.exit(code);
