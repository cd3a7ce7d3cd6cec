"""Logging in and out, and changing one's password.

Two brakes on password guessing:

* per client address (`LoginThrottle`): after `limit` failed logins inside `window` seconds the
  address gets 429 with Retry-After, without a password check (so guessing costs no argon2
  time on our side either);
* per user (`Directory.verify_login`): `MAX_FAILED_LOGINS` consecutive failures lock the user
  out for `LOCKOUT`, whatever addresses the attempts came from.

The login form has no session yet, so its CSRF protection is a double-submit token: a random
value in a SameSite=Strict cookie that the form must echo.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections import OrderedDict
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from teleway.core import passwords
from teleway.core import provisioning as prov
from teleway.core.ports import StoreUnavailable
from teleway.core.ratelimit import SlidingWindow
from teleway.web.portal.base import (
    SESSION_COOKIE,
    Portal,
    SessionUser,
    client_ip,
    field,
    log,
    read_form,
    redirect,
)

LOGIN_CSRF_COOKIE = "teleway_login"
AUTH_FAIL_LIMIT = 5  # failed logins per client address ([security] auth_fail_limit default)
AUTH_FAIL_WINDOW = 300.0  # seconds ([security] auth_fail_window_seconds default)
THROTTLE_MAX_CLIENTS = 10_000  # addresses remembered; the oldest are forgotten first


class LoginThrottle:
    """Failed logins per client address inside a sliding window (time passed in)."""

    def __init__(
        self,
        limit: int = AUTH_FAIL_LIMIT,
        window: float = AUTH_FAIL_WINDOW,
        max_clients: int = THROTTLE_MAX_CLIENTS,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self._clients: OrderedDict[str, SlidingWindow] = OrderedDict()

    def retry_after(self, ip: str, now: float) -> float:
        """Seconds until `ip` may try again (0: it may now)."""
        window = self._clients.get(ip)
        return 0.0 if window is None else window.delay(now)

    def failed(self, ip: str, now: float) -> None:
        window = self._clients.get(ip)
        if window is None:
            window = self._clients[ip] = SlidingWindow(self.limit, self.window)
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(ip)
        window.record(now)

    def succeeded(self, ip: str) -> None:
        self._clients.pop(ip, None)


def safe_next(target: str) -> str:
    """Where to go after logging in: a local path only (no open redirect)."""
    parts = urlsplit(target)
    if not target.startswith("/") or target.startswith("//") or parts.scheme or parts.netloc:
        return "/"
    if "\\" in target:
        return "/"
    return target


def routes(portal: Portal) -> list[Route]:
    def login_form(
        request: Request, *, error: str = "", username: str = "", status: int = 200
    ) -> Response:
        token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
        response = portal.render(
            request,
            "login.html",
            None,
            status=status,
            login_csrf=token,
            error=error,
            username=username,
            next=safe_next(request.query_params.get("next", "/")),
        )
        response.set_cookie(
            LOGIN_CSRF_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=portal.secure_cookies,
            path="/login",
        )
        return response

    async def login(request: Request) -> Response:
        try:
            return await attempt(request)
        except StoreUnavailable as exc:
            log(logging.ERROR, "portal: store unavailable at login", error=exc)
            return login_form(
                request,
                error="The gateway's database is not reachable. Please try again in a moment.",
                username="",
                status=503,
            )

    async def attempt(request: Request) -> Response:
        if request.method == "GET":
            if await portal.current(request) is not None:
                return redirect(safe_next(request.query_params.get("next", "/")))
            return login_form(request)
        form = await read_form(request)
        username = field(form, "username")[: prov.USERNAME_MAX]
        password = str(form.get("password", ""))
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        given = field(form, "csrf")
        if not cookie or not hmac.compare_digest(cookie.encode(), given.encode()):
            log(
                logging.WARNING,
                "portal: login form without a valid CSRF token",
                ip=client_ip(request),
            )
            return login_form(
                request,
                error="The login form expired. Please try again.",
                username=username,
                status=403,
            )
        ip = client_ip(request)
        now = portal.ctx.clock.now()
        wait = portal.throttle.retry_after(ip, now.timestamp())
        if wait > 0:
            log(logging.WARNING, "portal: login throttled", ip=ip, username=username)
            response = login_form(
                request,
                error=f"Too many failed logins from your address. Try again in {wait:.0f} s.",
                username=username,
                status=429,
            )
            response.headers["Retry-After"] = str(max(1, round(wait)))
            return response
        if len(password) > passwords.MAX_PASSWORD_LENGTH:
            user = None
        else:
            user = await portal.ctx.directory.verify_login(username, password)
        if user is None:
            portal.throttle.failed(ip, now.timestamp())
            log(logging.WARNING, "portal: login failed", ip=ip, username=username)
            return login_form(
                request,
                error="Wrong username or password, or the user is locked or disabled.",
                username=username,
                status=401,
            )
        portal.throttle.succeeded(ip)
        # ended sessions are deleted here, at a rate bounded by logins, not by page views
        await portal.sessions.purge(now=now)
        created = await portal.sessions.create(user, now=now, ip=ip)
        log(logging.INFO, "portal: logged in", username=user.username, role=str(user.role), ip=ip)
        response = RedirectResponse(safe_next(field(form, "next") or "/"), status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            created.token,
            httponly=True,
            samesite="lax",
            secure=portal.secure_cookies,
            path="/",
        )
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return response

    async def logout(request: Request, session: SessionUser) -> Response:
        await portal.sessions.end(session.id)
        log(logging.INFO, "portal: logged out", username=session.user.username)
        response = redirect("/login")
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def password(request: Request, session: SessionUser) -> Response:
        if request.method == "GET":
            return portal.render(
                request, "password.html", session, notice=request.query_params.get("notice", "")
            )
        form = await read_form(request)
        current = str(form.get("current", ""))
        new = str(form.get("new", ""))
        repeat = str(form.get("repeat", ""))
        errors: dict[str, str] = {}
        user = session.user
        ok = False
        if len(current) <= passwords.MAX_PASSWORD_LENGTH:
            ok = await portal.ctx.directory.verify_login(user.username, current) is not None
        if not ok:
            errors["current"] = "This is not your current password."
        problems = passwords.check_password_strength(new, username=user.username)
        if problems:
            errors["new"] = "The new password " + "; ".join(problems) + "."
        elif new != repeat:
            errors["repeat"] = "The two new passwords differ."
        elif new == current:
            errors["new"] = "The new password must differ from the current one."
        if errors:
            return portal.render(request, "password.html", session, status=400, errors=errors)
        try:
            await portal.ctx.directory.set_password(
                user.username, actor=f"portal:{user.username}", password=new
            )
        except prov.ProvisioningError as exc:
            return portal.render(
                request, "password.html", session, status=400, errors={"new": exc.reason}
            )
        ended = await portal.sessions.end_all(user.id, keep=session.id)
        log(logging.INFO, "portal: password changed", username=user.username, sessions_ended=ended)
        return redirect("/account/password", notice="Your password was changed.")

    return [
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", portal.page(logout), methods=["POST"]),
        Route("/account/password", portal.page(password), methods=["GET", "POST"]),
    ]
