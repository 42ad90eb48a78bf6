"""What `examsync serve --web-dir` serves: pages, Pyodide with the right types, the wheel, the
config the pages start from; nothing outside those folders."""

from __future__ import annotations

import httpx

from integration.conftest import ServerProcess


def test_pages_pyodide_and_wheel_are_served(server: ServerProcess) -> None:
    for path in ("/", "/candidate", "/supervisor", "/admin", "/sw.js", "/assets/candidate.js"):
        response = httpx.get(server.base + path)
        assert response.status_code == 200, path
        assert response.headers["cache-control"] == "no-cache"
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
