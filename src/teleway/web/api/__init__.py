"""The REST API, mounted at `/api/v1` by `web.app` (see docs/api.md).

`build_api(ctx)` returns its Starlette application: the routes of `routes.py`, the OpenAPI
document and its docs page, and one error handler that answers everything as problem+json.
"""

from __future__ import annotations

import json
import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from teleway.core.ports import StoreUnavailable
from teleway.web.api.auth import ApiAuth
from teleway.web.api.openapi import docs_page, openapi_document
from teleway.web.api.problems import (
    BY_STATUS,
    INTERNAL,
    MALFORMED,
    TOO_LARGE,
    ApiProblem,
    BodyTooLarge,
    ProblemKind,
)
from teleway.web.api.routes import MessagesApi, unavailable
from teleway.web.context import WebContext

logger = logging.getLogger("teleway.web.api")

__all__ = ["build_api"]


def build_api(ctx: WebContext) -> Starlette:
    messages = MessagesApi(ctx, ApiAuth(ctx))
    document = openapi_document(ctx.public_url)
    document_bytes = json.dumps(document, indent=1).encode()
    page = docs_page(document)

    async def openapi(request: Request) -> Response:
        return Response(document_bytes, media_type="application/json")

    async def docs(request: Request) -> Response:
        return HTMLResponse(page)

    async def problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiProblem)
        # one line per refused request (rate limiting: debug, it would flood the log)
        logger.log(
            logging.DEBUG if exc.kind.status == 429 else logging.INFO,
            "API: request refused",
            extra={
                "fields": {
                    "status": exc.kind.status,
                    "problem": exc.kind.slug,
                    "method": request.method,
                    "path": request.url.path,
                    "client": request.client.host if request.client else "-",
                    "detail": (exc.detail or "")[:200],
                }
            },
        )
        return exc.response(instance=request.url.path)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        kind = BY_STATUS.get(exc.status_code) or ProblemKind(
            slug="http-error", status=exc.status_code, title="HTTP error"
        )
        if exc.status_code == 400:
            kind = MALFORMED
        headers = dict(exc.headers or {})
        return ApiProblem(kind, str(exc.detail), headers=headers).response(request.url.path)

    async def too_large(request: Request, exc: Exception) -> Response:
        return ApiProblem(TOO_LARGE, f"at most {ctx.api.max_body_bytes} bytes").response(
            request.url.path
        )

    async def store_down(request: Request, exc: Exception) -> Response:
        """A store error no handler translated (e.g. while authenticating): 503, not 500."""
        return unavailable(exc).response(request.url.path)

    async def server_error(request: Request, exc: Exception) -> Response:
        logger.error(
            "API: unexpected error",
            extra={"fields": {"path": request.url.path, "error": f"{type(exc).__name__}: {exc}"}},
            exc_info=exc,
        )
        return ApiProblem(INTERNAL, "the error was logged").response(request.url.path)

    routes = [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Route("/messages", messages.create, methods=["POST"]),
        Route("/messages", messages.search, methods=["GET"]),
        Route("/messages/{message_id}", messages.get, methods=["GET"]),
        Route("/messages/{message_id}", messages.cancel, methods=["DELETE"]),
        Route("/account/usage", messages.usage, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={
            ApiProblem: problem,
            BodyTooLarge: too_large,
            StoreUnavailable: store_down,
            HTTPException: http_error,
            Exception: server_error,
        },
    )
