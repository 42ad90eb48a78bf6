"""Browser benchmark: the candidate page in headless Chromium against a real `examsync serve`.

Prints:
- boot: navigation to Pyodide loaded, and to the SDK wheel and page module imported — cold (a
  fresh browser profile: nothing cached) and cached (a reload: the service worker's copies);
- local saves: `save_answer` from the page into IndexedDB (durable when it returns), p50 and
  p99, with the network on (so the socket sends run alongside);
- memory of the page: the JS heap (CDP Performance.getMetrics) and Pyodide's wasm memory.

    python bench/browser.py [--runs 3] [--saves 300]

Needs what the browser tests need: the system's Chromium, npm (Pyodide) and `build` (wheel).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
from pathlib import Path
from typing import Any

import httpx
from benchlib import TOKEN, latency_line, start_server, stop_server
from playwright.sync_api import BrowserContext, Page, sync_playwright

from examsync_server.config import Settings
from examsync_server.demo.sample import PLAN_ID, sample_package, sample_plan
from examsync_server.web import chromium, prepare_assets

WEB_DIR = Path(__file__).resolve().parents[1] / "web_demo"
BOOT = "(async () => { const { timings } = await window.examsyncDemo.sdk; return timings; })()"
SAVES = """async (n) => {
    const page = window.examsyncDemo.page, took = [];
    for (let i = 0; i < n; i++) {
        const start = performance.now();
        await page.answer(i % 2 ? "Q004" : "Q005", `답안 ${i} `.repeat(20));
        took.push(performance.now() - start);
    }
    return took;
}"""
WASM_BYTES = """async () => {
    const { pyodide } = await window.examsyncDemo.sdk;
    return pyodide._module.HEAPU8.buffer.byteLength;
}"""


def start_exam(base: str) -> None:
    admin = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    plan = sample_plan(candidates=4)
    plan["exam_plan"]["requires_camera"] = False
    package = sample_package()
    steps: list[tuple[str, str, dict[str, Any]]] = [
        ("PUT", "", {"json": plan}),
        (
            "PUT",
            "/package",
            {
                "content": package,
                "headers": {"X-Content-SHA256": hashlib.sha256(package).hexdigest()},
            },
        ),
        ("POST", "/prepare", {}),
        ("POST", "/start", {}),
        ("POST", "/advance", {}),
    ]
    for method, path, kwargs in steps:
        admin.request(method, f"/api/v1/admin/plans/{PLAN_ID}{path}", **kwargs).raise_for_status()


def boot(page: Page) -> tuple[float, float]:
    """Milliseconds from navigation to Pyodide loaded, and to the SDK ready."""
    timings = page.evaluate(BOOT)
    return timings["pyodide"], timings["sdk"]


def sign_in(page: Page, base: str) -> None:
    page.goto(f"{base}/candidate?plan={PLAN_ID}")
    page.fill("[name=candidateId]", "CAND202301")
    page.fill("[name=authCode]", "AUTH1234")
    page.click("#login button[type=submit]")
    page.wait_for_selector("#questions li", timeout=120_000)


def summary(label: str, values: list[tuple[float, float]]) -> str:
    pyodide = statistics.median(v[0] for v in values)
    sdk = statistics.median(v[1] for v in values)
    return f"{label}: Pyodide {pyodide:.0f} ms, SDK ready {sdk:.0f} ms (median of {len(values)})"


def memory(context: BrowserContext, page: Page) -> str:
    cdp = context.new_cdp_session(page)
    cdp.send("Performance.enable")
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    wasm = page.evaluate(WASM_BYTES)
    mib = 1024 * 1024
    return (
        f"memory: JS heap {metrics['JSHeapUsedSize'] / mib:.1f} MiB used"
        f" of {metrics['JSHeapTotalSize'] / mib:.1f} MiB, Pyodide wasm memory {wasm / mib:.1f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--saves", type=int, default=300)
    args = parser.parse_args()
    prepare_assets(Settings().with_changes(web_dir=str(WEB_DIR)))
    with tempfile.TemporaryDirectory() as tmp:
        server, base = start_server(Path(tmp) / "data", "--web-dir", str(WEB_DIR))
        try:
            start_exam(base)
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path=chromium.executable(), headless=True, args=chromium.ARGS
                )
                cold, cached = [], []
                for _ in range(args.runs):
                    context = browser.new_context()
                    page = context.new_page()
                    sign_in(page, base)
                    cold.append(boot(page))
                    page.wait_for_function("navigator.serviceWorker.controller !== null")
                    page.reload()
                    page.wait_for_selector("#questions li", timeout=120_000)
                    cached.append(boot(page))
                    context.close()
                print(summary("boot, cold (fresh profile)", cold))
                print(summary("boot, cached (reload: service worker)", cached))

                context = browser.new_context()
                page = context.new_page()
                sign_in(page, base)
                took = page.evaluate(SAVES, args.saves)
                print(latency_line("local save into IndexedDB (save_answer)", took))
                page.wait_for_selector('#sync[data-status="synced"]', timeout=60_000)
                print(memory(context, page))
                browser.close()
        finally:
            stop_server(server)


if __name__ == "__main__":
    main()
