"""`create_app(settings)`: the Quart app with its blueprints; resources live for `while_serving`."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import Any

from quart import Quart, jsonify
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from .api import (
    admin,
    admin_answers,
    answers,
    candidate,
    events,
    health,
    media,
    openapi,
    supervisor,
)
from .api.save_route import handle_save, is_save
from .config import Settings
from .errors import ApiError, error_headers
from .runtime import Runtime
from .web import init_app as init_web

log = logging.getLogger(__name__)

RUNTIME_KEY = "examsync.runtime"


class ExamsyncApp(Quart):
    """Quart, with the save route answered before Quart's request machinery (api/save_route)."""

    async def asgi_app(self, scope: Any, receive: Any, send: Any) -> None:
        if is_save(scope):
            await handle_save(self.extensions.get(RUNTIME_KEY), scope, receive, send)
        else:
            await super().asgi_app(scope, receive, send)


def create_app(settings: Settings, runtime: Runtime | None = None) -> Quart:
    """The app; it starts and stops its own `Runtime` unless the caller passes one it owns."""
    app = ExamsyncApp("examsync_server")
    # Quart fixes a request's body limit when the request arrives, so the app-wide limit is the
    # largest body any route takes (a package); JSON routes hold theirs in `json_body()`.
    app.config["MAX_CONTENT_LENGTH"] = max(
        settings.limits.max_json_body_bytes, settings.limits.max_package_bytes
    )
    app.config["examsync.settings"] = settings
    for blueprint in (
        health.blueprint,
        admin.blueprint,
        admin_answers.blueprint,
        candidate.blueprint,
        supervisor.blueprint,
        events.blueprint,
        answers.blueprint,
        media.blueprint,
        openapi.blueprint,
    ):
        app.register_blueprint(blueprint)
    init_web(app, settings)
    _register_errors(app)

    @app.while_serving
    async def lifespan() -> AsyncGenerator[None, None]:
        owned = runtime is None
        current = runtime or await Runtime.start(settings)
        app.extensions[RUNTIME_KEY] = current
        try:
            yield
        finally:
            app.extensions.pop(RUNTIME_KEY, None)
            if owned:
                await current.stop()

    return app


def _register_errors(app: Quart) -> None:
    @app.errorhandler(ApiError)
    async def api_error(exc: ApiError) -> Any:
        response = jsonify(exc.to_body())
        response.status_code = exc.status
        response.headers.extend(error_headers(exc))
        return response

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Any:
        status = exc.code or 500
        code = {
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
            400: "bad_request",
        }.get(status, "http_error")
        return await api_error(ApiError(status, code, exc.description or exc.name))

    @app.errorhandler(RedisError)
    async def redis_down(exc: RedisError) -> Any:
        log.warning("Redis unavailable: %s", exc)
        return await api_error(
            ApiError(503, "redis_unavailable", "the live-state store is unavailable; retry shortly")
        )

    @app.errorhandler(Exception)
    async def internal(exc: Exception) -> Any:
        log.exception("unhandled error")
        return await api_error(ApiError(500, "internal_error", "an internal error occurred"))
