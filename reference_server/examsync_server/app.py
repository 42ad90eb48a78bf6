"""`create_app(settings)`: the Quart app with its blueprints; resources live for `while_serving`."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import Any

from quart import Quart, Response, jsonify
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from .access.tokens import bearer
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
from .api.http_guard import (
    BODY_LIMIT,
    SECURITY_HEADERS,
    BodyLimits,
    BoundedRequest,
    Sender,
    declared_length,
    header,
    response_headers,
    send_error,
    too_large,
)
from .api.save_route import handle_save, is_save
from .config import Settings
from .errors import ApiError
from .runtime import Runtime
from .web import init_app as init_web

log = logging.getLogger(__name__)

RUNTIME_KEY = "examsync.runtime"


class ExamsyncApp(Quart):
    """Quart, with the save route answered before Quart's request machinery (api/save_route),
    and every other route's body limit applied before Quart reads a byte (api/http_guard)."""

    request_class = BoundedRequest
    body_limits: BodyLimits

    async def asgi_app(self, scope: Any, receive: Any, send: Any) -> None:
        if is_save(scope):
            await handle_save(self.extensions.get(RUNTIME_KEY), scope, receive, send)
            return
        if scope["type"] == "http":
            limit, sender = self.body_limits.of(scope)
            declared = declared_length(scope)
            if declared is not None and declared > limit:
                await send_error(send, too_large(limit))
                return
            if sender is not None and not await self._may_send(sender, scope, send):
                return
            scope[BODY_LIMIT] = limit
        await super().asgi_app(scope, receive, send)

    async def _may_send(self, sender: Sender, scope: Any, send: Any) -> bool:
        """A route whose big body only the admin (or a live session) may send: anyone else is
        answered before Quart starts reading it, and the connection is closed so the server
        reads no more either. The handler checks the token again (and the role)."""
        runtime: Runtime | None = self.extensions.get(RUNTIME_KEY)
        if runtime is None:
            return True  # Quart's handler answers 503 "starting"
        authorization = header(scope, b"authorization")
        try:
            token = bearer(authorization.decode("latin-1") if authorization else None)
            if sender == "admin":
                runtime.tokens.require_admin(token)
            else:
                runtime.tokens.require_session(token)
        except ApiError as error:
            await send_error(send, error, close=True)
            return False
        return True


def create_app(settings: Settings, runtime: Runtime | None = None) -> Quart:
    """The app; it starts and stops its own `Runtime` unless the caller passes one it owns."""
    app = ExamsyncApp("examsync_server")
    app.body_limits = BodyLimits(app, settings.limits)
    # Each request gets its route's limit (BoundedRequest); this is only the ceiling.
    app.config["MAX_CONTENT_LENGTH"] = app.body_limits.largest
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

    @app.after_request
    async def secure(response: Response) -> Response:
        for name, value in SECURITY_HEADERS:  # a page may have set a policy of its own
            response.headers.setdefault(name, value)
        return response

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
        response.headers.extend(response_headers(exc))
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
