"""The web demo (web_demo/): candidate, supervisor and admin pages served beside the API.

Off unless asked for: `examsync demo` serves the checkout's web_demo/ (`--web-dir auto`, its
default), `examsync serve --web-dir PATH|auto` too. `prepare_assets` (run by the CLI before
the server starts) installs Pyodide from npm and builds the SDK wheel; `init_app` only adds
the routes (routes.py), so an app is created without running anything.
"""

from __future__ import annotations

from quart import Quart

from ..config import Settings
from .assets import AUTO, OFF, WebAssets, locate, prepare
from .routes import blueprint

__all__ = ["AUTO", "OFF", "WebAssets", "init_app", "prepare_assets"]


def prepare_assets(settings: Settings) -> WebAssets | None:
    """Make the demo servable (npm ci, wheel build) if `settings.process.web_dir` asks for it."""
    assets = locate(settings.process.web_dir)
    if assets is not None:
        prepare(assets)
    return assets


def init_app(app: Quart, settings: Settings) -> None:
    """Add the demo's routes when `settings.process.web_dir` names one."""
    assets = locate(settings.process.web_dir)
    if assets is not None:
        app.register_blueprint(blueprint(assets))
