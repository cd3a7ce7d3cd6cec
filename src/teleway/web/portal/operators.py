"""Operator pages: accounts, users, senders, networks, SMPP credentials, status, audit log.

Every change goes through `Directory` (which validates with core.provisioning and writes the
audit log in the same transaction, with the portal user as the actor `portal:<username>`).
A refused change re-renders the page with the reason next to the form that caused it, and the
values typed kept (passwords excepted): never a stack trace.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from teleway.core import provisioning as prov
from teleway.core.model import Account, Role
from teleway.core.routing import RouteTable
from teleway.store.directory import UNSET
from teleway.web.portal.base import Portal, SessionUser, field, log, read_form, redirect

AUDIT_PAGE = 200


def _actor(session: SessionUser) -> str:
    return f"portal:{session.user.username}"


def _message(exc: prov.ProvisioningError) -> str:
    reason = exc.reason.rstrip(".")
    if exc.value in (None, "", prov.HIDDEN) or isinstance(exc.value, dict):
        name = exc.field.rsplit(".", 1)[-1].replace("_", " ")
        return f"{name[:1].upper()}{name[1:]}: {reason}."
    return f"{exc.value}: {reason}."


def routes(portal: Portal) -> list[Route]:
    ctx = portal.ctx
    directory = ctx.directory

    async def require(name: str) -> Account:
        account = await directory.account_by_name(name)
        if account is None:
            raise HTTPException(404)
        return account

    # --- accounts ---------------------------------------------------------------------------

    async def accounts_page(
        request: Request,
        session: SessionUser,
        *,
        status: int = 200,
        errors: dict[str, str] | None = None,
        values: dict[str, str] | None = None,
    ) -> Response:
        accounts = await directory.list_accounts()
        users = await directory.list_users()
        senders = await directory.list_senders()
        return portal.render(
            request,
            "admin_accounts.html",
            session,
            status=status,
            accounts=accounts,
            user_counts={a.id: sum(1 for u in users if u.account_id == a.id) for a in accounts},
            sender_counts={a.id: sum(1 for s in senders if s.account_id == a.id) for a in accounts},
            errors=errors or {},
            values=values or {},
            notice=request.query_params.get("notice", ""),
        )

    async def accounts(request: Request, session: SessionUser) -> Response:
        if request.method == "GET":
            return await accounts_page(request, session)
        form = await read_form(request)
        name = field(form, "name")
        try:
            account = await directory.create_account(name, actor=_actor(session))
        except prov.ProvisioningError as exc:
            return await accounts_page(
                request, session, status=400, errors={"name": _message(exc)}, values={"name": name}
            )
        log(
            logging.INFO,
            "portal: account created",
            user=session.user.username,
            account=account.name,
        )
        return redirect(f"/admin/accounts/{account.name}", notice="Account created.")

    async def account_page(
        request: Request,
        session: SessionUser,
        account: Account | None = None,
        *,
        status: int = 200,
        errors: dict[str, str] | None = None,
        values: dict[str, str] | None = None,
    ) -> Response:
        if account is None:
            account = await require(request.path_params["name"])
        return portal.render(
            request,
            "admin_account.html",
            session,
            status=status,
            account=account,
            senders=await directory.list_senders(account.name),
            networks=await directory.list_networks(account.name),
            smpp=await directory.list_smpp(account.name),
            users=await directory.list_users(account.name),
            keys=await ctx.api_keys.list_keys(account.id),
            errors=errors or {},
            values=values or {},
            notice=request.query_params.get("notice", ""),
        )

    async def account_get(request: Request, session: SessionUser) -> Response:
        return await account_page(request, session)

    async def account_action(request: Request, session: SessionUser) -> Response:
        """One POST endpoint per account and action: /admin/accounts/{name}/{action}."""
        account = await require(request.path_params["name"])
        action = request.path_params["action"]
        form = await read_form(request)
        actor = _actor(session)
        values = {k: field(form, k) for k in form if k not in ("csrf", "password")}
        section = action.split("-", 1)[0]
        try:
            notice = await _apply(action, account, form, actor)
        except prov.ProvisioningError as exc:
            log(
                logging.INFO,
                "portal: change refused",
                user=session.user.username,
                action=action,
                reason=exc.reason,
            )
            return await account_page(
                request,
                session,
                account,
                status=409 if isinstance(exc, prov.Conflict) else 400,
                errors={section: _message(exc)},
                values=values,
            )
        log(logging.INFO, "portal: account changed", user=session.user.username, action=action)
        target = "/admin/accounts" if action == "delete" else f"/admin/accounts/{account.name}"
        return redirect(target, notice=notice)

    async def _apply(action: str, account: Account, form: Any, actor: str) -> str:
        name = account.name
        if action == "enable":
            await directory.set_account_enabled(name, True, actor=actor)
            return "Account enabled."
        if action == "disable":
            await directory.set_account_enabled(name, False, actor=actor)
            return "Account disabled: its clients are refused."
        if action == "delete":
            await directory.delete_account(name, actor=actor)
            return f"Account {name} deleted."
        if action == "sender-add":
            rule = await directory.add_sender(name, field(form, "pattern"), actor=actor)
            return f"Sender {rule.pattern} added."
        if action == "sender-remove":
            await directory.remove_sender(name, field(form, "pattern"), actor=actor)
            return "Sender removed."
        if action == "network-add":
            network = await directory.add_network(name, field(form, "cidr"), actor=actor)
            return f"Network {network.cidr} added."
        if action == "network-remove":
            await directory.remove_network(name, field(form, "cidr"), actor=actor)
            return "Network removed."
        if action == "smpp-add":
            credential = await directory.add_smpp(
                name,
                field(form, "system_id"),
                actor=actor,
                password=str(form.get("password", "")),
                system_type=field(form, "system_type") or None,
                max_binds=_number(form, "max_binds", "4"),
                throughput=_number(form, "throughput", "100"),
            )
            return f"SMPP credential {credential.system_id} added."
        if action == "smpp-update":
            password = str(form.get("password", "")) or None
            credential = await directory.update_smpp(
                field(form, "system_id"),
                actor=actor,
                password=password,
                max_binds=_number(form, "max_binds", "4"),
                throughput=_number(form, "throughput", "100"),
                enabled=form.get("enabled") == "on",
            )
            return f"SMPP credential {credential.system_id} saved."
        if action == "smpp-remove":
            await directory.remove_smpp(field(form, "system_id"), actor=actor)
            return "SMPP credential removed."
        if action == "user-add":
            user = await directory.add_user(
                field(form, "username"),
                actor=actor,
                account=name,
                role=Role.ACCOUNT_USER,
                password=str(form.get("password", "")),
                email=field(form, "email") or None,
            )
            return f"User {user.username} added."
        raise HTTPException(404)

    # --- users ------------------------------------------------------------------------------

    async def users_page(
        request: Request,
        session: SessionUser,
        *,
        status: int = 200,
        errors: dict[str, str] | None = None,
        values: dict[str, str] | None = None,
    ) -> Response:
        return portal.render(
            request,
            "admin_users.html",
            session,
            status=status,
            users=await directory.list_users(),
            account_names=await directory.account_names(),
            accounts=await directory.list_accounts(),
            errors=errors or {},
            values=values or {},
            notice=request.query_params.get("notice", ""),
        )

    async def users(request: Request, session: SessionUser) -> Response:
        if request.method == "GET":
            return await users_page(request, session)
        form = await read_form(request)
        values = {k: field(form, k) for k in ("username", "email", "role", "account")}
        try:
            role = prov.normalise_role(values["role"] or "user")
            user = await directory.add_user(
                values["username"],
                actor=_actor(session),
                account=values["account"] or None,
                role=role,
                password=str(form.get("password", "")),
                email=values["email"] or None,
            )
        except prov.ProvisioningError as exc:
            return await users_page(
                request,
                session,
                status=409 if isinstance(exc, prov.Conflict) else 400,
                errors={"add": _message(exc)},
                values=values,
            )
        return redirect("/admin/users", notice=f"User {user.username} added.")

    async def user_action(request: Request, session: SessionUser) -> Response:
        username = request.path_params["username"]
        action = request.path_params["action"]
        form = await read_form(request)
        actor = _actor(session)
        try:
            if action in ("enable", "disable"):
                if username == session.user.username and action == "disable":
                    raise prov.ProvisioningError("user", username, "you cannot disable yourself")
                user = await directory.set_user_enabled(username, action == "enable", actor=actor)
                if action == "disable":
                    await portal.sessions.end_all(user.id)
                notice = f"User {user.username} {action}d."
            elif action == "password":
                user = await directory.set_password(
                    username, actor=actor, password=str(form.get("password", ""))
                )
                await portal.sessions.end_all(user.id)
                notice = f"Password of {user.username} replaced; their sessions were ended."
            elif action == "delete":
                if username == session.user.username:
                    raise prov.ProvisioningError("user", username, "you cannot delete yourself")
                user_obj = await directory.get_user(username)
                await directory.delete_user(username, actor=actor)
                if user_obj is not None:
                    await portal.sessions.end_all(user_obj.id)
                notice = f"User {username} deleted."
            elif action == "update":
                email = field(form, "email")
                user = await directory.update_user(
                    username, actor=actor, email=email or None, role=UNSET, account=UNSET
                )
                notice = f"User {user.username} saved."
            else:
                raise HTTPException(404)
        except prov.ProvisioningError as exc:
            return await users_page(
                request,
                session,
                status=404 if isinstance(exc, prov.UnknownObject) else 400,
                errors={username: _message(exc)},
            )
        return redirect("/admin/users", notice=notice)

    # --- audit and status -------------------------------------------------------------------

    async def audit(request: Request, session: SessionUser) -> Response:
        entries = await directory.audit_log(limit=AUDIT_PAGE)
        wanted = request.query_params.get("q", "").strip().lower()[:100]
        if wanted:
            entries = [
                e
                for e in entries
                if wanted in f"{e.actor} {e.action} {e.subject} {e.detail}".lower()
            ]
        return portal.render(request, "admin_audit.html", session, entries=entries, q=wanted)

    async def status(request: Request, session: SessionUser) -> Response:
        health = await ctx.health() if ctx.health is not None else {}
        depth = {str(k): v for k, v in (await ctx.queue.depth()).items()}
        # the SMS route table, when the context offers one (a callable returning one mapping
        # per route: prefix, upstreams, weights...); shown as a plain table
        source = getattr(ctx, "routes", None)
        routes = route_rows(source()) if callable(source) else []
        columns = list(dict.fromkeys(key for r in routes for key in r))
        return portal.render(
            request,
            "admin_status.html",
            session,
            health={k: v for k, v in health.items() if k not in ("upstreams", "queue")},
            upstreams=ctx.upstreams(),
            depth=depth,
            routes=routes,
            route_columns=columns,
        )

    op = Role.OPERATOR
    return [
        Route("/admin", portal.page(lambda r, s: _to_accounts(), role=op)),
        Route("/admin/accounts", portal.page(accounts, role=op), methods=["GET", "POST"]),
        Route("/admin/accounts/{name}", portal.page(account_get, role=op)),
        Route(
            "/admin/accounts/{name}/{action}",
            portal.page(account_action, role=op),
            methods=["POST"],
        ),
        Route("/admin/users", portal.page(users, role=op), methods=["GET", "POST"]),
        Route(
            "/admin/users/{username}/{action}", portal.page(user_action, role=op), methods=["POST"]
        ),
        Route("/admin/audit", portal.page(audit, role=op)),
        Route("/admin/status", portal.page(status, role=op)),
    ]


def route_rows(table: Any) -> list[dict[str, str]]:
    """Rows for the status page: a `core.routing.RouteTable` (each route with its match rules
    and its upstream tiers, failover order left to right), or mappings given as they are."""
    if isinstance(table, RouteTable):
        rows = [
            {
                "route": route.name,
                "prefixes": " ".join("+" + p for p in route.prefixes) or "any",
                "countries": " ".join(route.countries) or "any",
                "accounts": " ".join(route.accounts) or "any",
                "sender": str(route.sender),
                "upstreams (failover →)": " → ".join(str(tier) for tier in route.tiers),
            }
            for route in table.routes
        ]
        rows.append(
            {
                "route": "(default)",
                "upstreams (failover →)": ", ".join(table.upstreams) or "none",
            }
        )
        return rows
    return [{str(k): str(v) for k, v in dict(row).items()} for row in table or ()]


async def _to_accounts() -> Response:
    return redirect("/admin/accounts")


def _number(form: Any, key: str, default: str) -> Any:
    """A number field as typed (core.provisioning checks and converts it)."""
    raw = str(form.get(key, "")).strip() or default
    try:
        return float(raw) if "." in raw else int(raw)
    except ValueError:
        return raw
