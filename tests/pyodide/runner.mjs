// Runs the SDK core tests (tests/sdk) inside Pyodide under Node, offline.
//
// Usage: node --experimental-wasm-stack-switching runner.mjs REPO_ROOT WHEEL_DIR [pytest args...]
//
// The repo is not mounted: sdk/examsync and tests/sdk are copied into Pyodide's in-memory
// file system, so nothing the run writes (bytecode, hypothesis' database) lands in the tree,
// and only the SDK's own tests and config are seen (not tests/conftest.py or pyproject.toml,
// whose options name CPython-only plugins such as pytest-asyncio).
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { loadPyodide } from "pyodide";

const [repoRoot, wheelDir, ...pytestArgs] = process.argv.slice(2);
if (!repoRoot || !wheelDir) {
  console.error("usage: runner.mjs REPO_ROOT WHEEL_DIR [pytest args...]");
  process.exit(2);
}

const pyodide = await loadPyodide();
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
const wheels = readdirSync(wheelDir).filter((n) => n.endsWith(".whl"));
if (wheels.length === 0) {
  console.error(`no wheels in ${wheelDir}`);
  process.exit(2);
}
for (const name of wheels) {
  // A Node Buffer is refused by unpackArchive: hand it a plain Uint8Array.
  const bytes = new Uint8Array(readFileSync(join(wheelDir, name)));
  pyodide.unpackArchive(bytes, "wheel", { extractDir: sitePackages });
}

copyTree(join(repoRoot, "sdk", "examsync"), "/work/sdk/examsync");
copyTree(join(repoRoot, "tests", "sdk"), "/work/tests/sdk");
// The CPython config lives in pyproject.toml; this mirrors the parts that matter here.
FS.writeFile(
  "/work/pytest.ini",
  "[pytest]\naddopts = --strict-markers -ra\nfilterwarnings = error\n",
);

pyodide.globals.set("PYTEST_ARGS", pyodide.toPy(pytestArgs));
const code = await pyodide.runPythonAsync(`
import os, sys
sys.dont_write_bytecode = True
sys.path.insert(0, "/work/sdk")
os.chdir("/work")
import pytest
print(f"Pyodide: Python {sys.version.split()[0]} on {sys.platform}", flush=True)
int(pytest.main(["-p", "no:cacheprovider", *(PYTEST_ARGS or ["-q"]), "tests/sdk"]))
`);
process.exit(code);
