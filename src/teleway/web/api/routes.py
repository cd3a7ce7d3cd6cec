"""The REST API's handlers (`/api/v1`): submit, list, read and cancel messages; account usage.

Every handler authenticates the caller first (`auth.ApiAuth`), works only on the caller's
account (another account's message is "not found", never "forbidden", so ids cannot be
probed), and answers errors as problem+json (`problems.py`). A submission is answered 201 only
after `accept()` committed it; a store that cannot take it gives 503 with Retry-After.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from teleway.core.accept import SubmissionRejected
from teleway.core.model import (
    Attachment,
    Content,
    DeliveryState,
    Device,
    Options,
    Origin,
    ReportOn,
    Submission,
)
from teleway.core.ports import StoreUnavailable
from teleway.store.history import InvalidCursor, MessageFilter
from teleway.store.idempotency import KEY_OPTION
from teleway.web.api import schemas
from teleway.web.api.auth import ApiAuth, Caller
from teleway.web.api.problems import (
    CONFLICT,
    FORBIDDEN,
    IDEMPOTENCY_BUSY,
    IDEMPOTENCY_MISMATCH,
    MALFORMED,
    NOT_FOUND,
    TOO_LARGE,
    UNAVAILABLE,
    UNSUPPORTED,
    ApiProblem,
    FieldError,
    invalid,
)
from teleway.web.context import WebContext

logger = logging.getLogger("teleway.web.api")

API_PREFIX = "/api/v1"
RETRY_AFTER_UNAVAILABLE = 5  # seconds, Retry-After of a 503
MAX_IDEMPOTENCY_KEY = 255
JSON_TYPE = "application/json"
MULTIPART_TYPE = "multipart/form-data"
MAX_FORM_FIELD_BYTES = 1024 * 1024  # the `message` part of a multipart submission


def unavailable(exc: Exception) -> ApiProblem:
    logger.warning("API: store unavailable", extra={"fields": {"error": str(exc)[:200]}})
    return ApiProblem(
        UNAVAILABLE,
        "the message store cannot take requests right now; retry later",
        headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE)},
    )


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _accept_field(field: str, reason: str) -> FieldError:
    """`accept()`'s problem names, in the API's field names."""
    if field.startswith("recipients[") and field.endswith("]"):
        suffix = ".device" if reason == "unknown device" else ".number"
        return FieldError(field=field + suffix, reason=reason)
    renamed = {
        "content": "text",
        "validity": "options.validity",
        "schedule": "options.schedule",
        "sender": "options.sender_id",
    }.get(field, field)
    return FieldError(field=renamed, reason=reason)


def _created_body(
    message_id: str, created_at: datetime, deliveries: list[tuple[str, str, Device]]
) -> dict[str, Any]:
    """The 201 answer to POST /messages: (id, recipient, device) of each delivery."""
    return {
        "id": message_id,
        "created_at": schemas.when(created_at),
        "deliveries": [
            {
                "id": delivery_id,
                "recipient": number,
                "device": str(device),
                "state": str(DeliveryState.QUEUED),
            }
            for delivery_id, number, device in deliveries
        ],
        "links": {"self": f"{API_PREFIX}/messages/{message_id}"},
    }


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class MessagesApi:
    def __init__(self, ctx: WebContext, auth: ApiAuth) -> None:
        self.ctx = ctx
        self.auth = auth

    # --- POST /messages ------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        caller = await self.auth.caller(request)
        if not caller.account.enabled:
            raise ApiProblem(FORBIDDEN, "the account is disabled")
        idempotency_key = request.headers.get("idempotency-key")
        if idempotency_key is not None:
            idempotency_key = idempotency_key.strip()
            if not (
                0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY
                and all(0x21 <= ord(c) <= 0x7E for c in idempotency_key)
            ):
                raise ApiProblem(
                    MALFORMED,
                    "Idempotency-Key must be 1 to 255 visible ASCII characters",
                    errors=[FieldError(field="Idempotency-Key", reason="1 to 255 visible ASCII")],
                )
        data, files = await self._read(request)
        fingerprint = hashlib.sha256(b"POST /messages\0" + _canonical(data))
        for upload, content in files:
            fingerprint.update(
                _canonical(
                    [upload.filename, upload.content_type, hashlib.sha256(content).hexdigest()]
                )
            )
        digest = fingerprint.hexdigest()
        account_id = caller.account.id
        if idempotency_key is not None:
            try:
                claim = await self.ctx.idempotency.claim(
                    account_id, idempotency_key, digest, now=self.ctx.clock.now()
                )
            except StoreUnavailable as exc:
                raise unavailable(exc) from exc
            result = claim.result.value
            if result == "replay":
                stored = claim.response or {}
                return JSONResponse(
                    stored.get("body", {}),
                    status_code=int(stored.get("status", 201)),
                    headers=self._created_headers(claim.message_id)
                    | {"Idempotent-Replayed": "true"},
                )
            if result == "mismatch":
                raise ApiProblem(
                    IDEMPOTENCY_MISMATCH,
                    "this Idempotency-Key was already used with a different request body",
                )
            if result == "busy":
                raise ApiProblem(
                    IDEMPOTENCY_BUSY,
                    "the first request with this Idempotency-Key has not finished; retry later",
                    headers={"Retry-After": "1"},
                )
            if result == "committed" and claim.message_id:
                # the first request's process died after its message was committed
                return await self._recovered(account_id, idempotency_key, claim.message_id)
        try:
            body = await self._submit(caller, data, files, idempotency_key)
        except BaseException:
            if idempotency_key is not None:
                try:
                    await self.ctx.idempotency.release(account_id, idempotency_key)
                except StoreUnavailable:
                    logger.warning("API: could not release an idempotency key (store down)")
            raise
        if idempotency_key is not None:
            try:
                await self.ctx.idempotency.complete(
                    account_id,
                    idempotency_key,
                    message_id=body["id"],
                    response={"status": 201, "body": body},
                )
            except StoreUnavailable:
                # the message is committed: say so; a retry after PENDING_TIMEOUT could repeat it
                logger.warning(
                    "API: message committed but its idempotency key could not be recorded",
                    extra={"fields": {"message": body["id"]}},
                )
        return JSONResponse(body, status_code=201, headers=self._created_headers(body["id"]))

    async def _recovered(self, account_id: int, key: str, message_id: str) -> Response:
        """The answer the first request with `key` would have given for `message_id`."""
        try:
            message = await self.ctx.messages.get_message(message_id)
            deliveries = await self.ctx.messages.deliveries_of(message_id)
        except StoreUnavailable as exc:
            raise unavailable(exc) from exc
        if message is None:  # purged meanwhile: nothing to answer with but a conflict
            raise ApiProblem(IDEMPOTENCY_BUSY, "retry later", headers={"Retry-After": "1"})
        body = _created_body(
            message_id,
            message.created_at,
            [(d.id, d.recipient, d.device) for d in sorted(deliveries, key=lambda d: d.seq)],
        )
        try:
            await self.ctx.idempotency.complete(
                account_id, key, message_id=message_id, response={"status": 201, "body": body}
            )
        except StoreUnavailable:
            logger.warning("API: could not record a recovered idempotency key (store down)")
        logger.info(
            "API: idempotency key of an interrupted request answered with its message",
            extra={"fields": {"message": message_id}},
        )
        return JSONResponse(
            body,
            status_code=201,
            headers=self._created_headers(message_id) | {"Idempotent-Replayed": "true"},
        )

    def _created_headers(self, message_id: str | None) -> dict[str, str]:
        if not message_id:
            return {}
        return {"Location": f"{API_PREFIX}/messages/{message_id}"}

    async def _read(self, request: Request) -> tuple[Any, list[tuple[UploadFile, bytes]]]:
        """The decoded JSON body (or the multipart `message` part) and the uploaded files."""
        media = _media_type(request)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.ctx.api.max_body_bytes:
            raise ApiProblem(TOO_LARGE, f"at most {self.ctx.api.max_body_bytes} bytes")
        if media == JSON_TYPE or media.endswith("+json"):
            raw = await request.body()
            try:
                return json.loads(raw), []
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                where = (
                    f" (line {exc.lineno}, column {exc.colno})"
                    if isinstance(exc, json.JSONDecodeError)
                    else ""
                )
                raise ApiProblem(MALFORMED, f"the body is not valid JSON{where}") from exc
            except RecursionError as exc:
                raise ApiProblem(MALFORMED, "the JSON is nested too deeply") from exc
        if media == MULTIPART_TYPE:
            return await self._read_multipart(request)
        raise ApiProblem(
            UNSUPPORTED,
            f"send {JSON_TYPE} or {MULTIPART_TYPE} (with attachments), not {media or 'nothing'}",
            headers={"Accept-Post": f"{JSON_TYPE}, {MULTIPART_TYPE}"},
        )

    async def _read_multipart(self, request: Request) -> tuple[Any, list[tuple[UploadFile, bytes]]]:
        try:
            form = await request.form(
                max_files=schemas.MAX_ATTACHMENTS,
                max_fields=4,
                max_part_size=MAX_FORM_FIELD_BYTES,
            )
        except Exception as exc:  # multipart parser errors (starlette raises HTTPException 400)
            raise ApiProblem(MALFORMED, f"the multipart body cannot be read: {exc}") from exc
        try:
            errors: list[FieldError] = []
            unknown = [k for k in form if k not in ("message", "attachments")]
            errors += [FieldError(field=k, reason="unknown form field") for k in unknown]
            message = form.get("message")
            data: Any = None
            if message is None:
                errors.append(FieldError(field="message", reason="is required (the JSON part)"))
            elif not isinstance(message, str):
                errors.append(FieldError(field="message", reason="must be JSON text, not a file"))
            else:
                try:
                    data = json.loads(message)
                except json.JSONDecodeError as exc:
                    errors.append(FieldError(field="message", reason=f"not valid JSON: {exc.msg}"))
            files: list[tuple[UploadFile, bytes]] = []
            total = 0
            for index, item in enumerate(form.getlist("attachments")):
                where = f"attachments[{index}]"
                if not isinstance(item, UploadFile):
                    errors.append(FieldError(field=where, reason="must be a file"))
                    continue
                content_type = (item.content_type or "").split(";", 1)[0].strip().lower()
                if content_type not in schemas.ATTACHMENT_TYPES:
                    errors.append(
                        FieldError(
                            field=f"{where}.content_type",
                            reason=f"{content_type or 'no type'} is not a document or audio "
                            "type teleway can deliver",
                        )
                    )
                    continue
                content = await item.read()
                total += len(content)
                if total > self.ctx.api.max_body_bytes:
                    raise ApiProblem(TOO_LARGE, f"at most {self.ctx.api.max_body_bytes} bytes")
                if not content:
                    errors.append(FieldError(field=where, reason="the file is empty"))
                    continue
                files.append((item, content))
            if errors:
                raise invalid(errors)
            return data, files
        finally:
            await form.close()

    async def _submit(
        self,
        caller: Caller,
        data: Any,
        files: list[tuple[UploadFile, bytes]],
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        parsed, errors = schemas.parse_message(data, max_recipients=self.ctx.api.max_recipients)
        if parsed is None:
            raise invalid(errors)
        account = caller.account
        now = self.ctx.clock.now()
        attachments: list[Attachment] = []
        try:
            for upload, content in files:
                blob_id = await self.ctx.blobs.put(content)
                attachments.append(
                    Attachment(
                        filename=(upload.filename or "attachment")[:255],
                        content_type=(upload.content_type or "").split(";", 1)[0].lower(),
                        blob_id=blob_id,
                        size=len(content),
                    )
                )
        except OSError as exc:
            raise unavailable(exc) from exc
        wants_reports = bool(parsed.callback_url or account.settings.webhook_url)
        submission = Submission(
            account=account,
            origin=Origin.HTTP,
            submitter=caller.submitter,
            recipients=parsed.recipients,
            content=Content(
                text=parsed.text, subject=parsed.subject, attachments=tuple(attachments)
            ),
            options=Options(
                valid_until=None if parsed.validity is None else now + parsed.validity,
                scheduled_at=parsed.schedule,
                sender_id=parsed.sender_id,
                report=ReportOn.ALL if wants_reports else ReportOn.NONE,
                callback_url=parsed.callback_url,
                # committed with the message: a retry after a crash finds it (store.idempotency)
                extra={} if idempotency_key is None else {KEY_OPTION: idempotency_key},
            ),
        )
        try:
            accepted = await self.ctx.accept(submission)
        except SubmissionRejected as exc:
            mapped = [_accept_field(p.field, p.reason) for p in exc.problems]
            if any(p.field == "account" for p in exc.problems):
                raise ApiProblem(FORBIDDEN, str(exc)) from exc
            raise invalid(mapped) from exc
        except StoreUnavailable as exc:
            raise unavailable(exc) from exc
        logger.info(
            "API: message accepted",
            extra={
                "fields": {
                    "message": accepted.message_id,
                    "account": account.name,
                    "key": caller.key_name,
                    "recipients": len(accepted.delivery_ids),
                }
            },
        )
        return _created_body(
            accepted.message_id,
            now,
            [
                (delivery_id, number, recipient.device)
                for delivery_id, number, recipient in zip(
                    accepted.delivery_ids, accepted.recipients, parsed.recipients, strict=True
                )
            ],
        )

    # --- GET /messages ---------------------------------------------------------------------

    async def search(self, request: Request) -> Response:
        caller = await self.auth.caller(request)
        q = request.query_params
        errors: list[FieldError] = []
        since = _query_time(q, "since", errors)
        until = _query_time(q, "until", errors)
        device = _query_enum(q, "device", Device, errors)
        state = _query_enum(q, "state", DeliveryState, errors)
        origin = _query_enum(q, "origin", Origin, errors)
        recipient = q.get("recipient")
        if recipient is not None and len(recipient) > schemas.MAX_NUMBER_CHARS:
            errors.append(FieldError(field="recipient", reason="too long"))
        limit = _query_int(q, "limit", errors, default=50, least=1, most=500)
        cursor = q.get("cursor") or None
        if errors:
            raise invalid(errors)
        flt = MessageFilter(
            account_id=caller.account.id,
            since=since,
            until=until,
            recipient=recipient,
            device=device,
            state=state,
            origin=origin,
        )
        try:
            page = await self.ctx.history.search(flt, limit=limit, cursor=cursor)
        except InvalidCursor as exc:
            raise invalid([FieldError(field="cursor", reason=str(exc))]) from exc
        except StoreUnavailable as exc:
            raise unavailable(exc) from exc
        items = []
        for item in page.items:
            body = schemas.message_json(item.message)
            body["deliveries"] = [
                {
                    "id": d.id,
                    "recipient": d.recipient,
                    "device": str(d.device),
                    "state": str(d.state),
                    "final": d.state.is_final,
                    "attempts": d.attempts,
                    "channel": d.channel,
                    "error": d.error,
                    "upstream_ids": list(d.upstream_ids),
                    "updated_at": schemas.when(d.updated_at),
                }
                for d in item.deliveries
            ]
            body["state_counts"] = {str(k): v for k, v in item.state_counts.items()}
            items.append(body)
        headers = {}
        if page.next_cursor is not None:
            params = dict(q)
            params["cursor"] = page.next_cursor
            query = "&".join(f"{k}={_quote(v)}" for k, v in params.items())
            headers["Link"] = f'<{API_PREFIX}/messages?{query}>; rel="next"'
        return JSONResponse({"items": items, "next_cursor": page.next_cursor}, headers=headers)

    # --- GET /messages/{id} ----------------------------------------------------------------

    async def get(self, request: Request) -> Response:
        caller = await self.auth.caller(request)
        message_id = request.path_params["message_id"]
        return JSONResponse(await self._detail(caller, message_id))

    async def _detail(self, caller: Caller, message_id: str) -> dict[str, Any]:
        try:
            detail = await self.ctx.history.detail(message_id, account_id=caller.account.id)
        except StoreUnavailable as exc:
            raise unavailable(exc) from exc
        if detail is None:
            raise ApiProblem(NOT_FOUND, f"no message {message_id!r} in this account")
        body = schemas.message_json(detail.message)
        body["deliveries"] = [
            schemas.delivery_json(
                d.delivery,
                events=d.events,
                parts=[
                    {
                        "upstream_id": p.upstream_id,
                        "part": p.part,
                        "state": p.state,
                        "updated_at": schemas.when(p.updated_at or p.created_at),
                    }
                    for p in d.parts
                ],
            )
            for d in detail.deliveries
        ]
        body["state_counts"] = schemas.state_counts_json(
            [d.delivery.state for d in detail.deliveries]
        )
        return body

    # --- DELETE /messages/{id} -------------------------------------------------------------

    async def cancel(self, request: Request) -> Response:
        caller = await self.auth.caller(request)
        message_id = request.path_params["message_id"]
        try:
            detail = await self.ctx.history.detail(message_id, account_id=caller.account.id)
            if detail is None:
                raise ApiProblem(NOT_FOUND, f"no message {message_id!r} in this account")
            cancelled: list[str] = []
            now = self.ctx.clock.now()
            for d in detail.deliveries:
                if d.delivery.state is not DeliveryState.QUEUED:
                    continue
                reason = f"cancelled through the API by key {caller.key_name}"
                if self.ctx.cancel_queued is not None:
                    moved = await self.ctx.cancel_queued(d.delivery.id, now=now, reason=reason)
                else:
                    moved = await self.ctx.queue.transition(
                        d.delivery.id, DeliveryState.CANCELLED, now=now, reason=reason
                    )
                if moved is not None and moved.state is DeliveryState.CANCELLED:
                    cancelled.append(d.delivery.id)
        except StoreUnavailable as exc:
            raise unavailable(exc) from exc
        if not cancelled:
            states = ", ".join(sorted({str(d.delivery.state) for d in detail.deliveries}))
            raise ApiProblem(
                CONFLICT,
                f"nothing left to cancel: no delivery is still queued (states: {states})",
            )
        logger.info(
            "API: deliveries cancelled",
            extra={"fields": {"message": message_id, "cancelled": len(cancelled)}},
        )
        body = await self._detail(caller, message_id)
        body["cancelled"] = cancelled
        return JSONResponse(body)

    # --- GET /account/usage ----------------------------------------------------------------

    async def usage(self, request: Request) -> Response:
        caller = await self.auth.caller(request)
        q = request.query_params
        errors: list[FieldError] = []
        now = self.ctx.clock.now()
        since = _query_time(q, "since", errors)
        until = _query_time(q, "until", errors)
        if errors:
            raise invalid(errors)
        if since is None:
            since = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        if until is None:
            until = now + timedelta(seconds=1)
        if until <= since:
            raise invalid([FieldError(field="until", reason="must be after since")])
        try:
            usage = await self.ctx.history.usage(caller.account.id, since=since, until=until)
        except StoreUnavailable as exc:
            raise unavailable(exc) from exc
        return JSONResponse(
            {
                "account": caller.account.name,
                "since": schemas.when(since),
                "until": schemas.when(until),
                "messages": usage.messages,
                "deliveries": usage.deliveries,
                "sms_parts": usage.sms_parts,
                "by_state": {str(k): v for k, v in usage.by_state.items()},
                "by_device": {str(k): v for k, v in usage.by_device.items()},
                "by_origin": {str(k): v for k, v in usage.by_origin.items()},
            }
        )


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _query_time(q: Mapping[str, str], name: str, errors: list[FieldError]) -> datetime | None:
    value = q.get(name)
    if value is None:
        return None
    try:
        return schemas.parse_datetime(value)
    except ValueError as exc:
        errors.append(FieldError(field=name, reason=str(exc) or "not an RFC 3339 date-time"))
        return None


def _query_enum(q: Mapping[str, str], name: str, kind: Any, errors: list[FieldError]) -> Any:
    value = q.get(name)
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(v.value for v in kind)
        errors.append(FieldError(field=name, reason=f"unknown {name} {value!r}: one of {choices}"))
        return None


def _query_int(
    q: Mapping[str, str],
    name: str,
    errors: list[FieldError],
    *,
    default: int,
    least: int,
    most: int,
) -> int:
    value = q.get(name)
    if value is None:
        return default
    if not value.isdigit() or not least <= int(value) <= most:
        errors.append(FieldError(field=name, reason=f"must be an integer from {least} to {most}"))
        return default
    return int(value)
