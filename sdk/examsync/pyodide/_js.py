"""The JavaScript side of Pyodide, typed so that mypy --strict checks this package on CPython.

``js`` and ``pyodide`` exist only inside Pyodide. For the type checker they are ``Any``-typed
names declared here (there are no stubs to install); at run time they are the real modules. The
rest of ``examsync.pyodide`` imports them from this module only, which keeps the fence simple:
importing anything here outside Pyodide fails at once with ImportError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

__all__ = [
    "JsException",
    "create_proxy",
    "error_name",
    "js",
    "js_object",
    "pyfetch",
    "run_js",
    "to_js",
]

if TYPE_CHECKING:
    js: Any  # the browser's (or Node's) globalThis

    class JsException(Exception):
        """A JavaScript error raised into Python; ``name`` is the JS error's name."""

        name: str
        message: str

    def create_proxy(obj: Callable[..., Any]) -> Any: ...
    def to_js(obj: object, *, dict_converter: Any = None) -> Any: ...
    def run_js(code: str) -> Any: ...
    async def pyfetch(url: str, **kwargs: Any) -> Any: ...

else:
    import js
    from pyodide.code import run_js
    from pyodide.ffi import JsException, create_proxy, to_js
    from pyodide.http import pyfetch


def js_object(**entries: object) -> Any:
    """A plain JS object (``{name: "Ed25519"}``), not a JS Map as ``to_js`` makes of a dict."""
    return to_js(entries, dict_converter=js.Object.fromEntries)


def error_name(exc: BaseException) -> str:
    """The JS error's name (``QuotaExceededError``...) or the Python class name."""
    return str(getattr(exc, "name", "") or type(exc).__name__)
