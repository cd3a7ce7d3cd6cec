"""What every portal page shares: the session guard, CSRF, rendering and account scoping.

Pages are plain Starlette handlers wrapped by `Portal.page(...)`, which

* resolves the session cookie (no session: a GET is redirected to the login page, anything else
  gets 401);
* checks the role (an account user asking for an operator page gets 403);
* checks the CSRF token on every unsafe method (form field `csrf` or header `X-CSRF-Token`,
  compared in constant time with the session's token): a forged or stale form gets 403 and a
  log line, and changes nothing.

Account scoping is explicit: `Portal.account_for(...)` answers 404 for an account the user may
not see, so that an account user cannot even learn which message ids or account names exist.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import jinja2
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from teleway.core.model import Account, Role, User
from teleway.core.ports import StoreUnavailable

if TYPE_CHECKING:
    from teleway.web.context import WebContext
    from teleway.web.portal.auth import LoginThrottle

logger = logging.getLogger("teleway.web.portal")

SESSION_COOKIE = "teleway_session"
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_MAX_BYTES = 64 * 1024  # a portal form is a few fields; bigger bodies are refused (413)


def log(level: int, message: str, **fields: Any) -> None:
    """A structured log line (same convention as runtime.logs: fields in `extra`)."""
    logger.log(level, message, extra={"fields": fields})


class SessionUser(Protocol):
    """What a page sees of the logged-in session."""

    id: str
    csrf: str
    user: User


class SessionStore(Protocol):
    """Portal sessions (store.web_sessions.WebSessions)."""

    async def create(self, user: User, *, now: datetime, ip: str | None) -> Any: ...

    async def resolve(self, token: str, *, now: datetime) -> Any: ...

    async def end(self, session_id: str) -> None: ...

    async def end_all(self, user_id: int, *, keep: str | None = None) -> int: ...

    async def purge(self, *, now: datetime) -> int: ...


Handler = Callable[[Request, Any], Awaitable[Response]]


@dataclass
class Portal:
    """The portal's dependencies and helpers; pages are functions of (request, session)."""

    ctx: WebContext
    sessions: SessionStore
    throttle: LoginThrottle
    env: jinja2.Environment
    secure_cookies: bool

    # --- rendering --------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        template: str,
        session: SessionUser | None = None,
        status: int = 200,
        **values: Any,
    ) -> HTMLResponse:
        page = self.env.get_template(template)
        html = page.render(
            request=request,
            session=session,
            user=session.user if session is not None else None,
            csrf=session.csrf if session is not None else values.pop("login_csrf", ""),
            path=request.url.path,
            **values,
        )
        return HTMLResponse(html, status_code=status, headers=page_headers())

    def error_page(
        self, request: Request, status: int, title: str, detail: str = "", session: Any = None
    ) -> HTMLResponse:
        return self.render(
            request, "error.html", session, status=status, title=title, detail=detail
        )

    # --- guards -----------------------------------------------------------------------------

    async def current(self, request: Request) -> SessionUser | None:
        token = request.cookies.get(SESSION_COOKIE, "")
        if not token:
            return None
        session: SessionUser | None = await self.sessions.resolve(token, now=self.ctx.clock.now())
        return session

    def page(
        self, handler: Handler, *, role: Role | None = None, csrf: bool = True
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap `handler(request, session)` with the session, role and CSRF checks."""

        async def endpoint(request: Request) -> Response:
            try:
                session = await self.current(request)
                if session is None:
                    if request.method == "GET":
                        target = request.url.path
                        if request.url.query:
                            target += "?" + request.url.query
                        return RedirectResponse(
                            f"/login?next={quote(target, safe='')}", status_code=303
                        )
                    return self.error_page(request, 401, "Please log in again")
                if role is not None and session.user.role is not role:
                    log(
                        logging.WARNING,
                        "portal: page refused to this role",
                        user=session.user.username,
                        path=request.url.path,
                    )
                    return self.error_page(
                        request, 403, "Not allowed", "This page is for operators.", session
                    )
                if (
                    csrf
                    and request.method in UNSAFE_METHODS
                    and not await self.csrf_ok(request, session.csrf)
                ):
                    log(
                        logging.WARNING,
                        "portal: CSRF token missing or wrong; request refused",
                        user=session.user.username,
                        path=request.url.path,
                        ip=client_ip(request),
                    )
                    return self.error_page(
                        request,
                        403,
                        "This form has expired",
                        "The form's security token did not match your session (CSRF "
                        "protection). Reload the page and submit it again.",
                        session,
                    )
                return await handler(request, session)
            except StoreUnavailable as exc:
                log(logging.ERROR, "portal: store unavailable", path=request.url.path, error=exc)
                return self.error_page(
                    request,
                    503,
                    "The database is not reachable",
                    "Nothing was changed. Please try again in a moment.",
                )

        return endpoint

    async def csrf_ok(self, request: Request, expected: str) -> bool:
        given = request.headers.get("x-csrf-token", "")
        if not given:
            content_type = request.headers.get("content-type", "")
            if content_type.startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")
            ):
                form = await read_form(request)
                given = str(form.get("csrf", ""))
        return bool(given) and hmac.compare_digest(given.encode(), expected.encode())

    # --- account scoping --------------------------------------------------------------------

    async def account_for(self, session: SessionUser, name: str | None = None) -> Account:
        """The account a page works on. Account users: their own (a `name` naming another
        account is answered 404, as if it did not exist). Operators: the named account."""
        user = session.user
        if user.role is Role.ACCOUNT_USER:
            if user.account_id is None:
                raise HTTPException(404)
            account = await self.ctx.directory.get_account(user.account_id)
            if account is None or (name is not None and account.name != name.strip().lower()):
                raise HTTPException(404)
            return account
        if name is None:
            raise HTTPException(404)
        found = await self.ctx.directory.account_by_name(name)
        if found is None:
            raise HTTPException(404)
        return found

    def visible_account_id(self, session: SessionUser) -> int | None:
        """None: every account (operators); else the only account the user may see."""
        user = session.user
        if user.role is Role.OPERATOR:
            return None
        return user.account_id if user.account_id is not None else -1


async def read_form(request: Request) -> Mapping[str, Any]:
    """The request's form (parsed once and cached on the request), size-limited."""
    cached = getattr(request.state, "form", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > FORM_MAX_BYTES:
        raise HTTPException(413, "form too large")
    form = await request.form(max_files=0, max_fields=200)
    request.state.form = form
    return form


def field(form: Mapping[str, Any], name: str, default: str = "") -> str:
    value = form.get(name, default)
    return value.strip() if isinstance(value, str) else default


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def page_headers() -> dict[str, str]:
    """Security headers of every portal page: no framing, no inline script, no caching."""
    return {
        "Content-Security-Policy": (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
        ),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def redirect(url: str, *, notice: str = "") -> RedirectResponse:
    """303 to `url` (after a POST), with an optional one-line notice shown by the next page."""
    if notice:
        url += ("&" if "?" in url else "?") + "notice=" + quote(notice, safe="")
    return RedirectResponse(url, status_code=303)
