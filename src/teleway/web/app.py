"""The HTTP listener's application: health, Prometheus metrics (the REST API and the portal
mount here in their own modules).

Errors are RFC 9457 problem+json documents, never an HTML stack trace.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

MetricsSource = Callable[[], tuple[bytes, str]]
HealthSource = Callable[[], Awaitable[dict[str, Any]]]


def problem(status: int, title: str, detail: str = "", **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, **extra}
    if detail:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def build_app(*, metrics: MetricsSource | None, health: HealthSource) -> Starlette:
    async def healthz(request: Request) -> Response:
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

    routes = [Route("/healthz", healthz)]
    if metrics is not None:
        routes.append(Route("/metrics", metrics_endpoint))
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
