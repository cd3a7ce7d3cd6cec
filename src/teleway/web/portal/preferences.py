"""Settings > Preferences: the SMS template (with live preview), long-SMS policy, push mode,
notification e-mails, webhook, and API keys.

Account users edit their own account at `/settings`; operators edit any account at
`/admin/accounts/{name}/settings` (the same pages, plus the settings only operators may change:
sender id, country, limits, e-mail authenticity checks). Every change goes through
`Directory.update_settings` (checked by core.provisioning, written to the audit log), and only
the fields that changed are sent, so the audit log says exactly what changed.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from teleway.core import provisioning as prov
from teleway.core.model import (
    Account,
    Device,
    LongSmsPolicy,
    PushMode,
    ReportOn,
    Role,
    Settings,
)
from teleway.store.api_keys import ApiKeyError
from teleway.web.portal.base import Portal, SessionUser, field, log, read_form, redirect
from teleway.web.portal.preview import preview

PREVIEW_BODY_MAX = 20_000  # bytes of a preview request

SAMPLE_SUBJECT = "Server room temperature"
SAMPLE_BODY = "The temperature in room 4 reached 31 °C at 14:05. Please check the cooling unit."

# settings anyone with the account may change, and the ones only operators may change
USER_TEXT = ("sms_template", "notify_email", "webhook_url")
USER_CHOICE = ("long_sms_policy", "push_mode", "notify_on")
USER_NUMBER = ("max_sms_parts", "push_fallback_seconds")
USER_FLAGS = ("notify_dsn", "strip_signature", "strip_quotes")
OPERATOR_TEXT = ("sender_id", "default_country")
OPERATOR_NUMBER = ("validity_seconds", "max_recipients")
OPERATOR_FLAGS = ("require_tls", "check_spf", "check_dkim")
OPERATOR_CHOICE = ("smpp_default_device",)
OPERATOR_LISTS = ("allowed_senders",)  # one text field, entries separated by commas


def _changes(
    form: Any, current: Settings, operator: bool
) -> tuple[dict[str, object], dict[str, str]]:
    """The settings the form changes (typed), and per-field errors of values not even typed
    right (core.provisioning checks the rest)."""
    before = current.to_dict()
    values: dict[str, object] = {}
    errors: dict[str, str] = {}
    texts = USER_TEXT + (OPERATOR_TEXT if operator else ())
    choices = USER_CHOICE + (OPERATOR_CHOICE if operator else ())
    numbers = USER_NUMBER + (OPERATOR_NUMBER if operator else ())
    flags = USER_FLAGS + (OPERATOR_FLAGS if operator else ())
    for key in texts:
        if key not in form:
            continue
        text = field(form, key) if key != "sms_template" else str(form.get(key, ""))
        values[key] = text or None if key != "sms_template" else text
    for key in choices:
        if key in form:
            values[key] = field(form, key)
    for key in OPERATOR_LISTS if operator else ():
        if key in form:
            values[key] = [part.strip() for part in field(form, key).split(",") if part.strip()]
    for key in numbers:
        if key not in form:
            continue
        raw = field(form, key)
        try:
            values[key] = int(raw)
        except ValueError:
            errors[key] = "Give a whole number."
    if "flags" in form:  # the form lists its checkboxes: an unchecked one is not sent
        for key in flags:
            values[key] = key in form
    secret = str(form.get("webhook_secret", ""))
    if form.get("clear_webhook_secret"):
        values["webhook_secret"] = None
    elif secret:
        if len(secret) < 16 or len(secret) > 256:
            errors["webhook_secret"] = "Use 16 to 256 characters."
        else:
            values["webhook_secret"] = secret
    changed = {k: v for k, v in values.items() if before.get(k) != v}
    return changed, errors


def routes(portal: Portal) -> list[Route]:
    ctx = portal.ctx

    def base_url(session: SessionUser, account: Account) -> str:
        if session.user.role is Role.OPERATOR:
            return f"/admin/accounts/{account.name}/settings"
        return "/settings"

    async def render_settings(
        request: Request,
        session: SessionUser,
        account: Account,
        *,
        status: int = 200,
        errors: dict[str, str] | None = None,
        shown: dict[str, Any] | None = None,
        new_key: str = "",
    ) -> Response:
        settings = account.settings.to_dict()
        if shown:
            settings.update(shown)
        keys = await ctx.api_keys.list_keys(account.id)
        attempts = await ctx.webhooks.recent(account.id, limit=10)
        sample = preview(
            template=str(settings["sms_template"]),
            subject=SAMPLE_SUBJECT,
            body=SAMPLE_BODY,
            policy=account.settings.long_sms_policy,
            max_parts=account.settings.max_sms_parts,
        )
        return portal.render(
            request,
            "settings.html",
            session,
            status=status,
            account=account,
            settings=settings,
            has_secret=bool(account.settings.webhook_secret),
            errors=errors or {},
            keys=keys,
            attempts=attempts,
            new_key=new_key,
            base=base_url(session, account),
            operator=session.user.role is Role.OPERATOR,
            sample_subject=SAMPLE_SUBJECT,
            sample_body=SAMPLE_BODY,
            preview=sample,
            policies=[str(p) for p in LongSmsPolicy],
            push_modes=[str(p) for p in PushMode],
            report_choices=[str(r) for r in ReportOn],
            devices=[str(d) for d in Device],
            notice=request.query_params.get("notice", ""),
        )

    async def settings_page(request: Request, session: SessionUser) -> Response:
        account = await portal.account_for(session, request.path_params.get("name"))
        if request.method == "GET":
            return await render_settings(request, session, account)
        form = await read_form(request)
        operator = session.user.role is Role.OPERATOR
        changes, errors = _changes(form, account.settings, operator)
        shown = {k: v for k, v in changes.items() if k != "webhook_secret"}
        if not errors and changes:
            try:
                account = await ctx.directory.update_settings(
                    account.name, changes, actor=f"portal:{session.user.username}"
                )
            except prov.ProvisioningError as exc:
                key = exc.field.removeprefix("settings.")
                errors[key if key in changes else "form"] = exc.reason
        if errors:
            log(
                logging.INFO,
                "portal: settings refused",
                user=session.user.username,
                fields=",".join(sorted(errors)),
            )
            return await render_settings(
                request, session, account, status=400, errors=errors, shown=shown
            )
        log(
            logging.INFO,
            "portal: settings saved",
            user=session.user.username,
            account=account.name,
            changed=",".join(sorted(changes)),
        )
        notice = "Preferences saved." if changes else "Nothing was changed."
        return redirect(base_url(session, account), notice=notice)

    async def preview_endpoint(request: Request, session: SessionUser) -> Response:
        account = await portal.account_for(session, request.path_params.get("name"))
        raw = await request.body()
        if len(raw) > PREVIEW_BODY_MAX:
            return JSONResponse({"error": "request too large"}, status_code=413)
        try:
            data = json.loads(raw or b"{}")
            if not isinstance(data, dict):
                raise ValueError("not an object")
            policy = LongSmsPolicy(data.get("long_sms_policy") or account.settings.long_sms_policy)
            max_parts = int(data.get("max_sms_parts") or account.settings.max_sms_parts)
            result = preview(
                template=str(data.get("sms_template", account.settings.sms_template)),
                subject=str(data.get("subject", SAMPLE_SUBJECT)),
                body=str(data.get("body", SAMPLE_BODY)),
                policy=policy,
                max_parts=max_parts,
            )
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": f"bad preview request: {exc}"}, status_code=400)
        return JSONResponse(result.to_dict(), headers={"Cache-Control": "no-store"})

    async def create_key(request: Request, session: SessionUser) -> Response:
        account = await portal.account_for(session, request.path_params.get("name"))
        form = await read_form(request)
        name = field(form, "name")
        try:
            key, secret = await ctx.api_keys.create(
                account.id,
                name,
                now=ctx.clock.now(),
                actor=f"portal:{session.user.username}",
            )
        except ApiKeyError as exc:
            return await render_settings(
                request, session, account, status=400, errors={"key_name": str(exc)}
            )
        log(
            logging.INFO,
            "portal: API key created",
            user=session.user.username,
            account=account.name,
            key=key.prefix,
        )
        # the key is shown on this one response only; it is never stored in clear
        return await render_settings(request, session, account, new_key=secret)

    async def revoke_key(request: Request, session: SessionUser) -> Response:
        account = await portal.account_for(session, request.path_params.get("name"))
        try:
            key_id = int(request.path_params["key_id"])
            key = await ctx.api_keys.revoke(
                key_id,
                account_id=account.id,
                now=ctx.clock.now(),
                actor=f"portal:{session.user.username}",
            )
        except (ValueError, ApiKeyError):
            return portal.error_page(request, 404, "No such API key", session=session)
        log(logging.INFO, "portal: API key revoked", user=session.user.username, key=key.prefix)
        return redirect(base_url(session, account), notice=f"Key {key.name!r} was revoked.")

    routes_: list[Route] = []
    for prefix in ("/settings", "/admin/accounts/{name}/settings"):
        routes_ += [
            Route(prefix, portal.page(settings_page), methods=["GET", "POST"]),
            Route(prefix + "/preview", portal.page(preview_endpoint), methods=["POST"]),
            Route(prefix + "/api-keys", portal.page(create_key), methods=["POST"]),
            Route(prefix + "/api-keys/{key_id}/revoke", portal.page(revoke_key), methods=["POST"]),
        ]
    return routes_
