"""Assembling the portal: templates, static files, routes and HTML error pages."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from teleway.web.context import WebContext
from teleway.web.portal import auth, dashboard, messages, operators, preferences
from teleway.web.portal.base import TEMPLATES, Portal, SessionStore, log

STATIC = Path(__file__).resolve().parent.parent / "static"

STATE_LABELS = {
    "accepted": "Accepted",
    "queued": "Queued",
    "in_flight": "In flight",
    "delivered": "Delivered",
    "undeliverable": "Undeliverable",
    "expired": "Expired",
    "rejected": "Rejected",
    "cancelled": "Cancelled",
}


def _when(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return "" if value is None else value.strftime(fmt) + " UTC"


def _state_label(value: Any) -> str:
    return STATE_LABELS.get(str(value), str(value))


SECRET_WORDS = ("secret", "password", "token", "key_hash")


def _masked(detail: Any) -> list[tuple[str, Any]]:
    """Audit details for display, with any secret-looking value hidden (defence in depth: the
    audit log should never hold one, but a page must not show it if it does)."""

    def clean(value: Any, name: str = "") -> Any:
        if any(word in name.lower() for word in SECRET_WORDS) and value not in (None, ""):
            return "***"
        if isinstance(value, dict):
            return {k: clean(v, str(k)) for k, v in value.items()}
        return value

    if not isinstance(detail, dict):
        return []
    return [(str(k), clean(v, str(k))) for k, v in detail.items()]


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(("html", "svg")),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["state_label"] = _state_label
    env.filters["masked"] = _masked
    return env


def _sessions(ctx: WebContext) -> SessionStore:
    """The context's session store; built here on the directory's engine when the context
    predates the `web_sessions` field."""
    found = getattr(ctx, "web_sessions", None)
    if found is not None:
        return found  # type: ignore[no-any-return]
    from teleway.store.web_sessions import WebSessions

    return WebSessions(ctx.directory.engine)


def build_portal(ctx: WebContext, *, sessions: SessionStore | None = None) -> Starlette:
    """The portal application (mounted at `/` by web.app)."""
    portal = Portal(
        ctx=ctx,
        sessions=sessions or _sessions(ctx),
        throttle=auth.LoginThrottle(
            limit=ctx.api.auth_fail_limit, window=ctx.api.auth_fail_window_seconds
        ),
        env=environment(),
        secure_cookies=ctx.tls,
    )

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        session = None
        try:
            session = await portal.current(request)
        except Exception:  # the error page must render even when the store fails
            session = None
        titles = {
            404: ("Not found", "There is no such page, or it is not yours to see."),
            405: ("Not allowed", "This page does not take that kind of request."),
            413: ("Too large", "The form was too large."),
        }
        title, detail = titles.get(status, ("Request refused", ""))
        return portal.error_page(request, status, title, detail, session)

    async def server_error(request: Request, exc: Exception) -> Response:
        log(
            logging.ERROR,
            "portal: unexpected error",
            path=request.url.path,
            error=f"{type(exc).__name__}: {exc}",
        )
        logging.getLogger("teleway.web.portal").debug("traceback", exc_info=exc)
        return portal.error_page(
            request,
            500,
            "Something went wrong",
            "The error was logged; nothing secret was shown. Please try again.",
        )

    routes: list[BaseRoute] = [
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        *auth.routes(portal),
        *dashboard.routes(portal),
        *messages.routes(portal),
        *preferences.routes(portal),  # before operators: /admin/accounts/{name}/settings
        *operators.routes(portal),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: not_found, Exception: server_error},
    )
    app.state.portal = portal
    return app
