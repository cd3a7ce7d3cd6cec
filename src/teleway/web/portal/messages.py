"""Message history: search, a message's timeline with live updates, CSV export, test message.

Live updates are server-sent events (`/messages/{id}/events`): the server polls the cheap
`History.last_event_id` once a second and sends `change` when it grew (the page then reloads
its timeline fragment) and `done` when every delivery reached a final state. A stream lasts at
most `STREAM_SECONDS` so that a stopping gateway is never held up by an open page; the browser's
EventSource reconnects by itself, sending `Last-Event-ID`.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from teleway.core.accept import SubmissionRejected
from teleway.core.model import (
    Content,
    DeliveryState,
    Device,
    Options,
    Origin,
    Recipient,
    ReportOn,
    Role,
    Submission,
)
from teleway.core.ports import StoreUnavailable
from teleway.store.history import InvalidCursor, MessageFilter
from teleway.web.portal.base import Portal, SessionUser, field, log, read_form, redirect

STREAM_SECONDS = 60.0  # one SSE connection at most; the browser reconnects
POLL_SECONDS = 1.0
KEEPALIVE_SECONDS = 15.0
PAGE_SIZE = 50
TEXT_MAX = 1600  # characters of a test message (10 GSM 7-bit parts)


@dataclass(frozen=True, kw_only=True)
class Filters:
    """The history filters as typed in the form (kept for re-display) and as a query."""

    values: dict[str, str]
    query: MessageFilter
    errors: dict[str, str]


def _day(text: str, name: str, errors: dict[str, str]) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        errors[name] = "Use a date like 2026-11-22."
        return None


def parse_filters(params: Any, account_id: int | None) -> Filters:
    """Filters from query parameters; a bad value becomes an error message, never a 500."""
    names = ("since", "until", "recipient", "device", "state", "origin", "account")
    values = {name: str(params.get(name, "")).strip()[:64] for name in names}
    errors: dict[str, str] = {}
    since_day = _day(values["since"], "since", errors)
    until_day = _day(values["until"], "until", errors)
    since = datetime.combine(since_day, dtime(), UTC) if since_day else None
    until = datetime.combine(until_day, dtime(), UTC) + timedelta(days=1) if until_day else None
    device = state = origin = None
    try:
        device = Device(values["device"]) if values["device"] else None
    except ValueError:
        errors["device"] = "Unknown device."
    try:
        state = DeliveryState(values["state"]) if values["state"] else None
    except ValueError:
        errors["state"] = "Unknown state."
    try:
        origin = Origin(values["origin"]) if values["origin"] else None
    except ValueError:
        errors["origin"] = "Unknown origin."
    recipient = values["recipient"]
    if recipient and not any(ch.isdigit() for ch in recipient):
        errors["recipient"] = "Give some digits of the number."
    return Filters(
        values=values,
        errors=errors,
        query=MessageFilter(
            account_id=account_id,
            since=since,
            until=until,
            recipient=recipient or None,
            device=device,
            state=state,
            origin=origin,
        ),
    )


def routes(portal: Portal) -> list[Route]:
    ctx = portal.ctx

    async def scope(session: SessionUser, request: Request) -> int | None:
        """The account id the history is limited to: the user's own; for operators the
        `account` filter (by name) or every account."""
        visible = portal.visible_account_id(session)
        if visible is not None:
            return visible
        name = request.query_params.get("account", "").strip()
        if not name:
            return None
        account = await ctx.directory.account_by_name(name)
        return account.id if account is not None else -1

    async def message_list(request: Request, session: SessionUser) -> Response:
        filters = parse_filters(request.query_params, await scope(session, request))
        page = None
        cursor = request.query_params.get("cursor") or None
        if not filters.errors:
            try:
                page = await ctx.history.search(filters.query, limit=PAGE_SIZE, cursor=cursor)
            except InvalidCursor:
                filters.errors["cursor"] = "That page link is not valid; showing the first page."
                page = await ctx.history.search(filters.query, limit=PAGE_SIZE)
        query = {k: v for k, v in filters.values.items() if v}
        names = await ctx.directory.account_names() if session.user.role is Role.OPERATOR else {}
        return portal.render(
            request,
            "messages.html",
            session,
            status=400 if filters.errors and page is None else 200,
            filters=filters.values,
            errors=filters.errors,
            page=page,
            account_names=names,
            next_url=(
                "/messages?" + urlencode({**query, "cursor": page.next_cursor})
                if page is not None and page.next_cursor
                else ""
            ),
            csv_url="/messages.csv" + ("?" + urlencode(query) if query else ""),
            devices=[str(d) for d in Device],
            states=[str(s) for s in DeliveryState],
            origins=[str(o) for o in Origin],
        )

    async def message_csv(request: Request, session: SessionUser) -> Response:
        filters = parse_filters(request.query_params, await scope(session, request))
        if filters.errors:
            return portal.error_page(
                request, 400, "Cannot export", "; ".join(filters.errors.values()), session
            )

        async def rows() -> AsyncIterator[str]:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            async for row in ctx.history.csv_rows(filters.query):
                writer.writerow([spreadsheet_safe(cell) for cell in row])
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()

        stamp = ctx.clock.now().strftime("%Y%m%d-%H%M%S")
        log(logging.INFO, "portal: CSV export", user=session.user.username)
        return StreamingResponse(
            rows(),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="teleway-messages-{stamp}.csv"',
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def load(session: SessionUser, message_id: str) -> Any:
        if len(message_id) > 64:
            raise HTTPException(404)
        detail = await ctx.history.detail(message_id, account_id=portal.visible_account_id(session))
        if detail is None:
            raise HTTPException(404)
        return detail

    async def message_page(request: Request, session: SessionUser) -> Response:
        detail = await load(session, request.path_params["message_id"])
        account = await ctx.directory.get_account(detail.message.account_id)
        return portal.render(
            request,
            "message.html",
            session,
            detail=detail,
            account=account,
            final=_all_final(detail),
            notice=request.query_params.get("notice", ""),
        )

    async def timeline(request: Request, session: SessionUser) -> Response:
        detail = await load(session, request.path_params["message_id"])
        return portal.render(
            request, "_timeline.html", session, detail=detail, final=_all_final(detail)
        )

    async def events(request: Request, session: SessionUser) -> Response:
        message_id = request.path_params["message_id"]
        detail = await load(session, message_id)
        try:
            last = int(request.headers.get("last-event-id") or request.query_params["after"])
        except (KeyError, ValueError):
            last = detail.last_event_id

        async def stream() -> AsyncIterator[str]:
            nonlocal last
            yield "retry: 1000\n\n"
            started = quiet = time.monotonic()
            done = _all_final(detail) and last >= detail.last_event_id
            while not done and time.monotonic() - started < STREAM_SECONDS:
                try:
                    current = await ctx.history.last_event_id(message_id)
                except StoreUnavailable:
                    current = last
                if current != last:
                    fresh = await ctx.history.detail(message_id, account_id=None)
                    last = current
                    quiet = time.monotonic()
                    states = [str(d.delivery.state) for d in fresh.deliveries] if fresh else []
                    yield f"id: {last}\nevent: change\ndata: {json.dumps(states)}\n\n"
                    done = fresh is None or _all_final(fresh)
                    continue
                if time.monotonic() - quiet > KEEPALIVE_SECONDS:
                    quiet = time.monotonic()
                    yield ": keep-alive\n\n"
                if await request.is_disconnected():
                    return
                await asyncio.sleep(POLL_SECONDS)
            if done:
                yield f"id: {last}\nevent: done\ndata: {{}}\n\n"

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def send_form(request: Request, session: SessionUser) -> Response:
        accounts = await ctx.directory.list_accounts() if session.user.role is Role.OPERATOR else []
        if request.method == "GET":
            return portal.render(
                request,
                "send.html",
                session,
                values={"device": "sms", "account": request.query_params.get("account", "")},
                errors={},
                accounts=accounts,
                devices=[str(d) for d in Device],
            )
        form = await read_form(request)
        values = {k: field(form, k) for k in ("account", "number", "device", "subject", "text")}
        errors: dict[str, str] = {}
        if session.user.role is Role.OPERATOR:
            account = (
                await ctx.directory.account_by_name(values["account"])
                if values["account"]
                else None
            )
            if account is None:
                errors["account"] = "Choose an account."
        else:
            account = await portal.account_for(session)
        try:
            device = Device(values["device"] or "sms")
        except ValueError:
            errors["device"] = "Unknown device."
            device = Device.SMS
        if not values["number"]:
            errors["number"] = "Give the recipient's number."
        if not values["text"]:
            errors["text"] = "Write a message."
        elif len(values["text"]) > TEXT_MAX:
            errors["text"] = f"At most {TEXT_MAX} characters."
        accepted = None
        if not errors and account is not None:
            if not account.enabled:
                errors["account"] = "This account is disabled."
            else:
                report = ReportOn.ALL if account.settings.webhook_url else ReportOn.NONE
                submission = Submission(
                    account=account,
                    origin=Origin.HTTP,
                    submitter=f"portal:{session.user.username}",
                    recipients=(Recipient(number=values["number"], device=device),),
                    content=Content(text=values["text"], subject=values["subject"]),
                    options=Options(report=report),
                )
                try:
                    accepted = await ctx.accept(submission)
                except SubmissionRejected as exc:
                    errors["form"] = "The message was refused: " + "; ".join(
                        f"{p.field}: {p.reason}" for p in exc.problems
                    )
                except StoreUnavailable:
                    errors["form"] = (
                        "The gateway cannot store messages right now; nothing was sent. "
                        "Try again in a moment."
                    )
        if accepted is None:
            return portal.render(
                request,
                "send.html",
                session,
                status=400 if "form" not in errors or "refused" in errors["form"] else 503,
                values=values,
                errors=errors,
                accounts=accounts,
                devices=[str(d) for d in Device],
            )
        log(
            logging.INFO,
            "portal: test message accepted",
            user=session.user.username,
            message_id=accepted.message_id,
        )
        return redirect(
            f"/messages/{accepted.message_id}", notice="Accepted: watch it being delivered."
        )

    return [
        Route("/messages", portal.page(message_list)),
        Route("/messages.csv", portal.page(message_csv)),
        Route("/messages/{message_id}", portal.page(message_page)),
        Route("/messages/{message_id}/timeline", portal.page(timeline)),
        Route("/messages/{message_id}/events", portal.page(events)),
        Route("/send", portal.page(send_form), methods=["GET", "POST"]),
    ]


FORMULA_STARTS = ("=", "@", "\t", "\r", "+", "-")


def spreadsheet_safe(cell: str) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (OWASP "CSV injection"): text
    starting with = @ + - TAB or CR gets a leading apostrophe. Numbers stay as they are, so
    E.164 recipients (`+14155550123`) and negative values are not altered."""
    if cell.startswith(FORMULA_STARTS) and not _is_number(cell):
        return "'" + cell
    return cell


def _is_number(cell: str) -> bool:
    body = cell[1:] if cell[:1] in "+-" else cell
    return bool(body) and body.replace(".", "", 1).isdigit()


def _all_final(detail: Any) -> bool:
    return all(d.delivery.state.is_final for d in detail.deliveries)
