"""Every status a route answers in the server tests must be in the OpenAPI document.

`observe_statuses(app)` wraps the app the tests talk to and records each response's method,
route and status; the `app` fixture then fails the test that saw a status the document does not
list for that route (issue 15, defect 9). So the document is checked against what the routes
really answer across the whole suite, and a new status without its line fails where it is seen.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from quart import Quart
from werkzeug.exceptions import HTTPException

from examsync_server.api import save_route
from examsync_server.api.openapi import document


@functools.cache
def documented() -> dict[tuple[str, str], frozenset[int]]:
    """(path template, method) → the statuses the document lists."""
    return {
        (path, method.upper()): frozenset(int(code) for code in op["responses"])
        for path, ops in document()["paths"].items()
        for method, op in ops.items()
    }


class StatusRecorder:
    def __init__(self, app: Quart) -> None:
        self.app = app
        self.seen: set[tuple[str, str, int]] = set()

    def route_of(self, method: str, path: str) -> str | None:
        """The route's path as the document writes it; None for a path no route serves."""
        if method == "POST" and path == save_route.PATH:
            return save_route.PATH  # answered in front of Quart's router
        try:
            rule, _ = self.app.url_map.bind("test").match(path, method, return_rule=True)
        except HTTPException:  # 404 or 405: no route of the document answered
            return None
        return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)

    def undocumented(self) -> list[str]:
        found = []
        table = documented()
        for method, route, status in sorted(self.seen):
            if (route, method) not in table:
                continue  # pages and assets: not the API (test_contract checks the API's routes)
            if status not in table[route, method]:
                found.append(f"{method} {route} answered {status}")
        return found


def observe_statuses(app: Quart) -> StatusRecorder:
    recorder = StatusRecorder(app)
    inner = app.asgi_app

    async def observed(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return

        async def record(message: Any) -> None:
            if message["type"] == "http.response.start":
                route = recorder.route_of(scope["method"], scope["path"])
                if route is not None:
                    recorder.seen.add((scope["method"], route, message["status"]))
            await send(message)

        await inner(scope, receive, record)

    app.asgi_app = observed  # type: ignore[method-assign]
    return recorder
