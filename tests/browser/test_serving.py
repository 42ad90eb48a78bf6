"""What `examsync serve --web-dir` serves: pages, Pyodide with the right types, the wheel, the
config the pages start from; nothing outside those folders."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from examsync_server.api.http_guard import CANDIDATE_PAGE_POLICY, CONTENT_SECURITY_POLICY
from integration.conftest import ADMIN_TOKEN, ServerProcess, start_server


def test_pages_pyodide_and_wheel_are_served(server: ServerProcess) -> None:
    for path in ("/", "/candidate", "/supervisor", "/admin", "/sw.js", "/assets/candidate.js"):
        response = httpx.get(server.base + path)
        assert response.status_code == 200, path
        assert response.headers["cache-control"] == "no-cache"
        # the security headers; only the candidate page's policy allows eval (docs/server.md)
        policy = CANDIDATE_PAGE_POLICY if path == "/candidate" else CONTENT_SECURITY_POLICY
        assert response.headers["content-security-policy"] == policy, path
        assert "frame-ancestors 'none'" in policy
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    config = httpx.get(server.base + "/web/config.json").json()
    wasm = httpx.get(f"{server.base}{config['pyodideUrl']}pyodide.asm.wasm")
    assert wasm.status_code == 200
    assert wasm.headers["content-type"] == "application/wasm"
    assert "immutable" in wasm.headers["cache-control"]
    assert wasm.content[:4] == b"\0asm"
    wheel = httpx.get(server.base + config["wheelUrl"])
    assert wheel.status_code == 200 and wheel.content[:2] == b"PK"
    assert config["wheelUrl"].endswith("-py3-none-any.whl")


def test_nothing_else_is_served(server: ServerProcess) -> None:
    config = httpx.get(server.base + "/web/config.json").json()
    for path in (
        f"{config['pyodideUrl']}package.json",  # in the npm folder, but not a runtime file
        "/pyodide/0.0.1/pyodide.mjs",  # another version
        "/wheels/0000/examsync-0.1.0-py3-none-any.whl",
        "/assets/../package.json",
        "/assets/%2e%2e/package.json",
        "/node_modules/pyodide/pyodide.mjs",
    ):
        response = httpx.get(server.base + path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"


def test_demo_serves_the_checkouts_pages_and_prints_their_urls(
    tmp_path: Path, redis_url: str, web_assets: Path
) -> None:
    demo = start_server(tmp_path / "data", redis_url, command="demo")
    try:
        assert httpx.get(demo.base + "/candidate").status_code == 200
        output = printed(demo, "sign in with the admin token")  # the last line it prints
        assert f"{demo.base}/candidate?plan=PLAN202401" in output
        assert f"{demo.base}/admin?plan=PLAN202401 " in output
        assert ADMIN_TOKEN not in output  # it came from the variable: never printed
    finally:
        demo.stop()
    off = start_server(tmp_path / "off", redis_url, "--web-dir", "off", command="demo")
    try:
        assert httpx.get(off.base + "/candidate").status_code == 404
        assert "Web demo:" not in printed(off, "API contract:")
    finally:
        off.stop()


def printed(server: ServerProcess, text: str) -> str:
    """The server's output once it shows `text` (the demo plan loads after start-up)."""
    deadline = time.monotonic() + 20
    while text not in (output := server.output()):
        assert time.monotonic() < deadline, output
        time.sleep(0.1)
    return output


def test_no_chromium_is_an_error_not_a_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    from examsync_server.web import chromium

    monkeypatch.delenv("EXAMSYNC_CHROMIUM", raising=False)
    monkeypatch.setattr(chromium.shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="apt-get install chromium"):
        chromium.executable()
