"""The demo's URLs: pages, their assets, Pyodide, the SDK wheel, and the pages' config.

    /  /candidate  /supervisor  /admin     the pages (web_demo/*.html)
    /sw.js                                 the candidate page's service worker (scope /candidate)
    /assets/<file>                         CSS, JS and the page's Python (web_demo/assets/)
    /pyodide/<version>/<file>              Pyodide's files from npm (immutable: versioned URL)
    /wheels/<digest>/<wheel>               the SDK wheel (immutable: the digest of its sources)
    /web/config.json                       what the pages load: the two URLs above, versions

Nothing here needs a session: these are public files. The API stays under /api/v1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quart import Blueprint, Response, jsonify, send_from_directory
from werkzeug.exceptions import NotFound

from ..api.http_guard import CANDIDATE_PAGE_POLICY
from .assets import WebAssets

PAGES = {
    "": "index.html",
    "candidate": "candidate.html",
    "supervisor": "supervisor.html",
    "admin": "admin.html",
}
# Pyodide's runtime files: what a page loads on boot (and what the service worker keeps).
PYODIDE_FILES = (
    "pyodide.mjs",
    "pyodide.asm.mjs",
    "pyodide.asm.wasm",
    "python_stdlib.zip",
    "pyodide-lock.json",
)
# Set here, not guessed from the system's mime.types, which may lack .wasm or .mjs: a wasm
# module is only compiled while streaming when it is served as application/wasm.
_TYPES = {
    ".wasm": "application/wasm",
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".py": "text/x-python; charset=utf-8",
    ".whl": "application/zip",
}
IMMUTABLE = "public, max-age=31536000, immutable"
# Pages and assets change with the checkout: the browser asks again each time (304 when same).
REVALIDATE = "no-cache"


def blueprint(assets: WebAssets) -> Blueprint:
    """The routes; the wheel is the one built for the sources as they were at start-up."""
    web = Blueprint("web_demo", __name__)
    built = assets.wheel()
    pyodide_version = assets.pyodide_version

    async def send(directory: Path, name: str, cache: str) -> Response:
        response = await send_from_directory(
            directory, name, mimetype=_TYPES.get(Path(name).suffix)
        )
        response.headers["Cache-Control"] = cache
        return response

    @web.get("/", defaults={"page": ""})
    @web.get("/<any(candidate, supervisor, admin):page>")
    async def page(page: str) -> Response:
        response = await send(assets.web_dir, PAGES[page], REVALIDATE)
        if page == "candidate":
            response.headers["Content-Security-Policy"] = CANDIDATE_PAGE_POLICY
        return response

    @web.get("/sw.js")
    async def service_worker() -> Response:
        return await send(assets.web_dir, "sw.js", REVALIDATE)

    @web.get("/assets/<path:name>")
    async def asset(name: str) -> Response:
        return await send(assets.web_dir / "assets", name, REVALIDATE)

    @web.get("/pyodide/<version>/<name>")
    async def pyodide(version: str, name: str) -> Response:
        if version != pyodide_version or name not in PYODIDE_FILES:
            raise NotFound()
        return await send(assets.pyodide_dir, name, IMMUTABLE)

    @web.get("/wheels/<digest>/<name>")
    async def wheel(digest: str, name: str) -> Response:
        if built is None or digest != built.parent.name or name != built.name:
            raise NotFound()
        return await send(built.parent, name, IMMUTABLE)

    @web.get("/web/config.json")
    async def config() -> Any:
        response = jsonify(
            {
                "pyodideUrl": f"/pyodide/{pyodide_version}/" if pyodide_version else None,
                "pyodideFiles": list(PYODIDE_FILES),
                "wheelUrl": f"/wheels/{built.parent.name}/{built.name}" if built else None,
            }
        )
        response.headers["Cache-Control"] = REVALIDATE
        return response

    return web
