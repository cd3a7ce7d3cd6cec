"""The HTTP listener's application: health, Prometheus metrics, the REST API at `/api/v1` and
the portal at `/`.

Around everything: security headers on every response, a bound on request bodies (413 before
the body is read past the limit), and per-route request metrics. Errors outside the portal are
RFC 9457 problem+json documents, never an HTML stack trace.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from teleway.web.api.problems import BodyTooLarge
from teleway.web.context import WebContext

MetricsSource = Callable[[], tuple[bytes, str]]
HealthSource = Callable[[], Awaitable[dict[str, Any]]]

API_ROOT = "/api/v1"
# Sent on every response unless the handler set its own (the portal sets a stricter CSP).
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
)
HSTS = (b"strict-transport-security", b"max-age=31536000")  # RFC 6797, HTTPS listeners only


def problem(status: int, title: str, detail: str = "", **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, **extra}
    if detail:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def route_label(path: str) -> str:
    """A bounded metrics label for a request path (ids folded, the portal as one)."""
    if path.startswith(API_ROOT + "/messages/"):
        return API_ROOT + "/messages/{id}"
    if path.startswith(API_ROOT + "/"):
        known = ("/messages", "/account/usage", "/openapi.json", "/docs")
        rest = path[len(API_ROOT) :]
        return API_ROOT + rest if rest in known else API_ROOT + "/(other)"
    if path in ("/healthz", "/metrics"):
        return path
    return "(portal)"


class Guard:
    """ASGI middleware: security headers, body size limit, request metrics."""

    def __init__(self, app: ASGIApp, ctx: WebContext | None, max_body: int) -> None:
        self.app = app
        self.ctx = ctx
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        tls = scope.get("scheme") == "https"
        seen = 0
        limit = self.max_body
        responded = False

        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self._too_large(scope, receive, send)
            self._count(scope, 413, started)
            return

        async def bounded_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge
            return message

        async def secured_send(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                responded = True
                status = message["status"]
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                for name, value in SECURITY_HEADERS:
                    if name not in present:
                        headers.append((name, value))
                if tls and HSTS[0] not in present:
                    headers.append(HSTS)
                if scope["path"].startswith(API_ROOT) and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, bounded_receive, secured_send)
        except BodyTooLarge:
            status = 413
            if not responded:
                await self._too_large(scope, receive, secured_send)
        finally:
            self._count(scope, status, started)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413,
            "The request body is too large",
            f"at most {self.max_body} bytes",
        )
        await response(scope, receive, send)

    def _count(self, scope: Scope, status: int, started: float) -> None:
        if self.ctx is not None:
            self.ctx.metrics.http_request(
                route_label(scope["path"]),
                scope.get("method", ""),
                status,
                time.perf_counter() - started,
            )


def build_app(
    ctx: WebContext | None = None,
    *,
    metrics: MetricsSource | None = None,
    health: HealthSource | None = None,
) -> Starlette:
    """The listener's application. With `ctx`: the REST API and (when installed) the portal;
    `metrics` / `health` default to the context's."""
    if ctx is not None:
        metrics = metrics if metrics is not None else ctx.metrics_text
        health = health if health is not None else ctx.health

    async def healthz(request: Request) -> Response:
        if health is None:
            return JSONResponse({"ok": True})
        report = await health()
        return JSONResponse(report, status_code=200 if report.get("ok") else 503)

    async def metrics_endpoint(request: Request) -> Response:
        assert metrics is not None
        body, content_type = metrics()
        return Response(body, media_type=content_type)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return problem(exc.status_code, str(exc.detail))

    async def server_error(request: Request, exc: Exception) -> Response:
        return problem(500, "Internal Server Error", "the error was logged")

    routes: list[BaseRoute] = [Route("/healthz", healthz)]
    if metrics is not None:
        routes.append(Route("/metrics", metrics_endpoint))
    max_body = 1024 * 1024
    if ctx is not None:
        from teleway.web.api import build_api

        max_body = ctx.api.max_body_bytes + 64 * 1024  # multipart framing around the files
        routes.append(Mount(API_ROOT, app=build_api(ctx)))
        if importlib.util.find_spec("teleway.web.portal") is not None:
            from teleway.web.portal import build_portal

            routes.append(Mount("/", app=build_portal(ctx)))
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.add_middleware(Guard, ctx=ctx, max_body=max_body)
    return app
