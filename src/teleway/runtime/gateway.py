"""The one place that builds concrete objects and runs them: `teleway serve` and friends.

Start order: store (schema checked) -> simulator (when enabled) -> upstreams -> workers -> HTTP.
Stop order is the reverse, draining: the HTTP listener stops accepting, the dispatcher stops
leasing and lets attempts in flight finish, upstreams unbind, the store commits what is pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import random
import signal
from collections.abc import Iterator, Sequence
from dataclasses import fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import uvicorn

from teleway.channels.sms.channel import SmsChannel
from teleway.channels.sms.upstream import Upstream, UpstreamSettings
from teleway.core.accept import SubmissionRejected, accept
from teleway.core.model import (
    Accepted,
    Content,
    Device,
    Options,
    Origin,
    Recipient,
    ReportOn,
    Submission,
)
from teleway.core.ports import StoreUnavailable
from teleway.core.retry import RetryPolicy
from teleway.core.routing import RouteError, RouteTable
from teleway.ingress.smpp_server import SmppServer, SmppServerSettings
from teleway.ingress.smtp import SmtpLimits, SmtpListener, SmtpPolicy
from teleway.ingress.smtp_authenticity import use_dns_servers
from teleway.notify.email import EmailNotifier, RelaySettings
from teleway.notify.smpp_receipts import ReporterSettings, SmppReporter
from teleway.notify.webhook import WebhookSender, WebhookSettings
from teleway.runtime.acceptance import Acceptor
from teleway.runtime.config import Config, ConfigError, UpstreamConfig, load_config, mask_url
from teleway.runtime.logs import log, setup_logging
from teleway.runtime.metrics import Metrics, SmppServerMetrics
from teleway.runtime.outcomes import Receipts, Replies, SmsMetrics
from teleway.runtime.wiring import RandomIds, SystemClock, settle_heap
from teleway.runtime.workers import Dispatcher, LocalHandoff, Sweeper
from teleway.store import SchemaMismatch, Store, open_store
from teleway.store.api_keys import ApiKeys
from teleway.store.blobs import LocalBlobStore
from teleway.store.directory import Directory
from teleway.store.history import History
from teleway.store.idempotency import IdempotencyKeys
from teleway.store.inbound import HeldReplyParts, InboundNumbers
from teleway.store.migrations import upgrade
from teleway.store.receipts import PartOutcomes
from teleway.store.smpp_ops import SmppOperations
from teleway.store.web_sessions import WebSessions
from teleway.store.webhooks import WebhookAttempts
from teleway.testing.smsc import SimulatorSettings, SmscSimulator
from teleway.web.app import build_app
from teleway.web.context import ApiSettings, WebContext

logger = logging.getLogger("teleway")

DRAIN_SECONDS = 30.0
DISPATCH_CONCURRENCY = 32  # attempts in flight per dispatcher task (queue.workers tasks)
ROUTES_POLL_SECONDS = 2.0  # how often the configuration file is checked for route changes


class GatewayError(Exception):
    """Start-up failed for a reason the operator can fix; the message says what and how."""


async def _open(config: Config) -> Store:
    url = config.database.url
    try:
        return await open_store(
            url, pool_size=config.database.pool_size, max_overflow=config.database.max_overflow
        )
    except SchemaMismatch as exc:
        raise GatewayError(f"{exc}\nrun `teleway db upgrade` first") from exc
    except StoreUnavailable as exc:
        raise GatewayError(f"cannot open the database at {mask_url(url)}: {exc}") from exc


def _prepare_dirs(config: Config) -> None:
    try:
        config.gateway.data_dir.mkdir(parents=True, exist_ok=True)
        config.blobs.directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GatewayError(f"cannot create data directories: {exc}") from exc


async def upgrade_database(config: Config) -> str:
    _prepare_dirs(config)
    try:
        await upgrade(config.database.url)
    except StoreUnavailable as exc:
        raise GatewayError(
            f"cannot reach the database at {mask_url(config.database.url)}: {exc}"
        ) from exc
    return f"database at {mask_url(config.database.url)} is up to date"


async def check_database(config: Config) -> str:
    store = await _open(config)
    await store.close()
    return f"database at {mask_url(config.database.url)} matches this version"


def upstream_settings(cfg: UpstreamConfig) -> UpstreamSettings:
    """The channel's view of an [[upstreams]] entry (same field names)."""
    values: dict[str, Any] = {}
    for f in fields(UpstreamSettings):
        value = getattr(cfg, f.name)
        values[f.name] = (
            str(value) if f.name in ("bind_mode", "concat", "message_id_format") else value
        )
    return UpstreamSettings(**values)


class _HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: the gateway drains everything on a signal."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Gateway:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.clock = SystemClock()
        self.ids = RandomIds()
        self.store: Store | None = None
        self.acceptor: Acceptor | None = None
        self.simulator: SmscSimulator | None = None
        self.upstreams: list[Upstream] = []
        self.channel: SmsChannel | None = None
        self._routes_seen: float | None = None
        self._route_watch: asyncio.Task[None] | None = None
        self.dispatchers: list[Dispatcher] = []
        self.sweeper: Sweeper | None = None
        self.http: uvicorn.Server | None = None
        self.smtp: SmtpListener | None = None
        self.email_notifier: EmailNotifier | None = None
        self.smpp: SmppServer | None = None
        self.smpp_reporter: SmppReporter | None = None
        self.webhooks: WebhookSender | None = None
        self._purging: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.listening: list[tuple[str, str]] = []

    async def start(self) -> None:
        cfg = self.config
        _prepare_dirs(cfg)
        self.store = store = await _open(cfg)
        self.metrics.watch_store(store.writer)
        directory = Directory(store.engine)
        # what every ingress calls to hand over a message (metrics included)
        self.acceptor = Acceptor(
            store=store.messages, clock=self.clock, ids=self.ids, metrics=self.metrics
        )
        try:
            if cfg.simulator.enabled:
                sim = cfg.simulator
                self.simulator = SmscSimulator(
                    SimulatorSettings(
                        host=sim.host,
                        port=sim.port,
                        system_id=sim.system_id,
                        password=sim.password,
                        receipt_delay=sim.receipt_delay,
                        success_ratio=sim.success_ratio,
                    )
                )
                await self._listen(
                    "SMSC simulator (SMPP)", sim.host, sim.port, self.simulator.start()
                )
            channel = SmsChannel(upstreams=[], accounts=directory, clock=self.clock)
            self.channel = channel
            for up in cfg.upstreams:
                if not up.enabled:
                    continue
                upstream = Upstream(
                    upstream_settings(up),
                    on_deliver=channel.on_deliver,
                    on_state=self._upstream_state,
                )
                self.metrics.upstream_bound.labels(up.name).set(0)
                self.upstreams.append(upstream)
            channel.upstreams = self.upstreams
            channel.routes = cfg.route_table()
            channel.observer = SmsMetrics(self.metrics)
            channel.inbound = Replies(
                numbers=InboundNumbers(store.engine),
                outbox=store.outbox,
                accounts=directory,
                clock=self.clock,
                default_sources={u.name: u.source_addr for u in cfg.upstreams},
            )
            if cfg.source is not None:
                self._routes_seen = _mtime(cfg.source)
                self._route_watch = asyncio.create_task(self._watch_routes(cfg.source))
            channel.sink = Receipts(
                parts=PartOutcomes(store.db, store.writer),
                queue=store.queue,
                clock=self.clock,
                metrics=self.metrics,
            )
            # parts of replies answered before their message was whole, before any new part
            channel.held = HeldReplyParts(store.db, store.writer)
            await channel.restore_held()
            for upstream in self.upstreams:
                upstream.start()
            q = cfg.queue
            retry = RetryPolicy(base_seconds=q.retry_base_seconds, max_seconds=q.retry_max_seconds)
            node = cfg.gateway.node_name
            for index in range(q.workers):
                dispatcher = Dispatcher(
                    queue=store.queue,
                    messages=store.messages,
                    channels=[channel],
                    clock=self.clock,
                    metrics=self.metrics,
                    worker=f"{node}-{os.getpid()}-{index}",
                    concurrency=DISPATCH_CONCURRENCY,
                    poll_interval=q.poll_interval,
                    lease_for=_seconds(q.lease_seconds),
                    retry=retry,
                    rng=random.Random(),
                )
                self.dispatchers.append(dispatcher)
                self._tasks.append(asyncio.create_task(dispatcher.run()))
            # new deliveries go straight to these dispatchers, committed already leased
            self.acceptor.handoff = LocalHandoff(self.dispatchers, self.metrics)
            self.sweeper = Sweeper(queue=store.queue, clock=self.clock, metrics=self.metrics)
            self._tasks.append(asyncio.create_task(self.sweeper.run()))
            if cfg.notifications.enabled:
                self._start_email_notifier(store, directory)
            if cfg.listeners.smtp.enabled:
                await self._start_smtp(directory)
            if cfg.listeners.smpp.enabled or cfg.listeners.smpp_tls.enabled:
                await self._start_smpp(store, directory)
            if cfg.webhooks.enabled:
                self._start_webhooks(store, directory)
            if cfg.listeners.http.enabled:
                await self._start_http(store, directory)
        except BaseException:
            await self.stop()
            raise

    async def _start_smtp(self, directory: Directory) -> None:
        cfg = self.config
        smtp = cfg.listeners.smtp
        use_dns_servers(smtp.dns_servers)
        limits = SmtpLimits(
            domains=cfg.gateway.domains,
            hostname=smtp.hostname or cfg.gateway.domains[0],
            max_message_size=smtp.max_message_size,
            max_recipients=smtp.max_recipients,
            max_connections_per_ip=smtp.max_connections_per_ip,
            connections_per_minute_per_ip=smtp.connections_per_minute_per_ip,
            messages_per_minute_per_ip=smtp.messages_per_minute_per_ip,
            messages_per_minute_per_account=smtp.messages_per_minute_per_account,
            auth_fail_limit=cfg.security.auth_fail_limit,
            auth_fail_window_seconds=cfg.security.auth_fail_window_seconds,
            timeout=smtp.timeout,
        )
        assert self.acceptor is not None
        policy = SmtpPolicy(
            limits=limits,
            directory=directory,
            accept=self.acceptor.accept,
            blobs=LocalBlobStore(cfg.blobs.directory),
            spool_dir=cfg.gateway.data_dir / "spool",
            replies=lambda command, code: self.metrics.smtp_replies.labels(command, code).inc(),
        )
        context = None
        if smtp.starttls:
            from teleway.runtime.tls import server_context

            context = server_context(
                smtp.tls_cert, smtp.tls_key, cfg.gateway.data_dir, cfg.gateway.domains
            )
        self.smtp = SmtpListener(
            policy, host=smtp.host, port=smtp.port, tls_context=context, auth=smtp.auth
        )
        await self._listen("SMTP listener", smtp.host, smtp.port, self.smtp.start())

    async def _start_smpp(self, store: Store, directory: Directory) -> None:
        """The SMPP server (plain and TLS listeners) and the receipts/replies sender."""
        cfg = self.config
        plain, tls = cfg.listeners.smpp, cfg.listeners.smpp_tls
        context = None
        if tls.enabled:
            from teleway.runtime.tls import server_context

            context = server_context(
                tls.tls_cert, tls.tls_key, cfg.gateway.data_dir, cfg.gateway.domains
            )
        observer = SmppServerMetrics(self.metrics)
        assert self.acceptor is not None
        self.smpp = SmppServer(
            SmppServerSettings(
                host=plain.host,
                port=plain.port,
                plain=plain.enabled,
                tls_host=tls.host,
                tls_port=tls.port,
                tls=context,
                window=plain.window,
                receipt_window=plain.receipt_window,
                enquire_link_interval=plain.enquire_link_interval,
                response_timeout=plain.response_timeout,
                inactivity_timeout=plain.inactivity_timeout,
                max_pdu_length=plain.max_pdu_length,
                concat_timeout=plain.concat_timeout,
                auth_fail_limit=cfg.security.auth_fail_limit,
                auth_fail_window=cfg.security.auth_fail_window_seconds,
            ),
            directory=directory,
            accept=self.acceptor.accept,
            accept_many=self.acceptor.accept_many,
            operations=SmppOperations(store.db, store.writer, store.queue),
            clock=self.clock,
            observer=observer,
        )
        endpoints = [
            (what, f"{host}:{port}")
            for what, host, port, on in (
                ("SMPP server", plain.host, plain.port, plain.enabled),
                ("SMPP server (TLS)", tls.host, tls.port, tls.enabled),
            )
            if on
        ]
        try:
            await self.smpp.start()
        except OSError as exc:
            raise GatewayError(
                f"cannot listen on {', '.join(e for _, e in endpoints)} for the SMPP server: "
                f"{exc.strerror or exc} (another program holds the port? change it in "
                "teleway.toml)"
            ) from exc
        self.listening.extend(endpoints)
        self.smpp_reporter = SmppReporter(
            outbox=store.outbox,
            messages=store.messages,
            receivers=self.smpp.registry,
            clock=self.clock,
            settings=ReporterSettings(
                worker=f"{cfg.gateway.node_name}-{os.getpid()}-smpp",
                poll=cfg.queue.poll_interval,
            ),
            observer=observer,
        )
        self._tasks.append(asyncio.create_task(self.smpp_reporter.run()))

    def _start_email_notifier(self, store: Store, directory: Directory) -> None:
        cfg = self.config
        n = cfg.notifications
        self.email_notifier = EmailNotifier(
            outbox=store.outbox,
            messages=store.messages,
            accounts=directory,
            relay=RelaySettings(
                host=n.relay_host,
                port=n.relay_port,
                tls=n.relay_tls,
                tls_verify=n.relay_tls_verify,
                user=n.relay_user,
                password=n.relay_password,
                from_address=n.from_address,
                timeout=n.timeout,
                retry_base_seconds=n.retry_base_seconds,
                retry_max_seconds=n.retry_max_seconds,
            ),
            clock=self.clock,
            worker=f"{cfg.gateway.node_name}-{os.getpid()}-mail",
            domain=cfg.gateway.domains[0],
            counted=lambda kind, result: self.metrics.email_notifications.labels(
                kind, result
            ).inc(),
            poll_interval=cfg.queue.poll_interval,
        )
        self._tasks.append(asyncio.create_task(self.email_notifier.run()))

    async def _listen(self, what: str, host: str, port: int, starting: Any) -> None:
        try:
            await starting
        except OSError as exc:
            raise GatewayError(
                f"cannot listen on {host}:{port} for the {what}: {exc.strerror or exc}"
                " (another program holds the port? change it in teleway.toml)"
            ) from exc
        self.listening.append((what, f"{host}:{port}"))

    def _start_webhooks(self, store: Store, directory: Directory) -> None:
        cfg = self.config
        w = cfg.webhooks
        self.webhooks = WebhookSender(
            outbox=store.outbox,
            messages=store.messages,
            accounts=directory,
            attempts=WebhookAttempts(store.db, store.writer),
            clock=self.clock,
            settings=WebhookSettings(
                worker=f"{cfg.gateway.node_name}-{os.getpid()}-webhooks",
                poll=cfg.queue.poll_interval,
                concurrency=w.concurrency,
                timeout=w.timeout,
                retry=RetryPolicy(
                    base_seconds=w.retry_base_seconds, max_seconds=w.retry_max_seconds
                ),
                allow_private=w.allow_private,
            ),
            counted=lambda result: self.metrics.webhooks.labels(result).inc(),
        )
        self._tasks.append(asyncio.create_task(self.webhooks.run()))

    async def _purge_web_tables(self, store: Store) -> None:
        """Forget idempotency keys after a day, webhook attempts after 30 days and ended portal
        sessions (hourly)."""
        keys = IdempotencyKeys(store.db, store.writer)
        attempts = WebhookAttempts(store.db, store.writer)
        sessions = WebSessions(store.engine)
        while True:
            try:
                now = self.clock.now()
                await keys.purge(now=now)
                await attempts.purge(now=now)
                await sessions.purge(now=now)
            except StoreUnavailable as exc:
                log(logger, logging.WARNING, "web tables not purged", error=str(exc))
            await asyncio.sleep(3600)

    def _route_table(self) -> Any:
        """The route table in force (reloads replace it), for the portal's status page."""
        return None if self.channel is None else self.channel.routes

    def web_context(self, store: Store, directory: Directory) -> WebContext:
        """What the REST API and the portal are given (web.context)."""
        http = self.config.listeners.http
        assert self.acceptor is not None
        return WebContext(
            messages=store.messages,
            queue=store.queue,
            directory=directory,
            accept=self.acceptor.accept,
            blobs=LocalBlobStore(self.config.blobs.directory),
            clock=self.clock,
            ids=self.ids,
            history=History(store.db),
            api_keys=ApiKeys(store.db, store.writer),
            idempotency=IdempotencyKeys(store.db, store.writer),
            webhooks=WebhookAttempts(store.db, store.writer),
            outbox=store.outbox,
            cancel_queued=SmppOperations(store.db, store.writer, store.queue).cancel,
            health=self.health,
            metrics_text=(lambda: (self.metrics.render(), self.metrics.content_type))
            if http.metrics
            else None,
            metrics=self.metrics,
            upstreams=lambda: {u.name: u.bound for u in self.upstreams},
            public_url=http.public_url,
            domains=self.config.gateway.domains,
            tls=bool(http.tls_cert),
            web_sessions=WebSessions(store.engine),
            routes=self._route_table,
            api=ApiSettings(
                rate_limit=http.api_rate_limit,
                rate_burst=http.api_rate_burst,
                max_body_bytes=http.max_body_bytes,
                max_recipients=http.api_max_recipients,
                auth_fail_limit=self.config.security.auth_fail_limit,
                auth_fail_window_seconds=self.config.security.auth_fail_window_seconds,
            ),
        )

    async def _start_http(self, store: Store, directory: Directory) -> None:
        http = self.config.listeners.http
        app = build_app(self.web_context(store, directory))
        self._purging = asyncio.create_task(self._purge_web_tables(store))
        server = _HttpServer(
            uvicorn.Config(
                app,
                host=http.host,
                port=http.port,
                log_config=None,
                lifespan="off",
                access_log=False,
                ssl_certfile=http.tls_cert or None,
                ssl_keyfile=http.tls_key or None,
            )
        )
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                exc = task.exception()
                raise GatewayError(
                    f"cannot listen on {http.host}:{http.port} for HTTP: {exc or 'address in use'}"
                )
            await asyncio.sleep(0.02)
        self.http = server
        self._tasks.append(task)
        self.listening.append(("HTTP (API, portal, /metrics)", f"{http.host}:{http.port}"))

    def reload_routes(self) -> bool:
        """Read the configuration file again and apply its [[routes]] (SIGHUP, or the file
        changed). Other settings need a restart. An invalid file, or routes naming an upstream
        this process does not run, keep the routes in use."""
        source = self.config.source
        if source is None or self.channel is None:
            return False
        try:
            fresh = load_config(source).route_table()
            table = RouteTable(routes=fresh.routes, upstreams=tuple(u.name for u in self.upstreams))
        except (ConfigError, RouteError) as exc:
            self.metrics.route_reloads.labels("invalid").inc()
            log(
                logger,
                logging.ERROR,
                "routes not reloaded: keeping the routes in use (new upstreams need a restart)",
                file=str(source),
                error=str(exc),
            )
            return False
        self.channel.routes = table
        self.metrics.route_reloads.labels("ok").inc()
        log(logger, logging.INFO, "routes reloaded", file=str(source), routes=len(table.routes))
        return True

    async def _watch_routes(self, source: Path) -> None:
        """Reload the routes when the configuration file's modification time changes."""
        while True:
            await asyncio.sleep(ROUTES_POLL_SECONDS)
            seen = _mtime(source)
            if seen != self._routes_seen:
                self._routes_seen = seen
                self.reload_routes()

    def _upstream_state(self, upstream: Upstream, bound: bool) -> None:
        self.metrics.upstream_bound.labels(upstream.name).set(1 if bound else 0)

    async def health(self) -> dict[str, Any]:
        ok = True
        report: dict[str, Any] = {"node": self.config.gateway.node_name}
        try:
            assert self.store is not None
            report["queue"] = {str(k): v for k, v in (await self.store.queue.depth()).items()}
        except Exception as exc:
            ok = False
            report["store_error"] = repr(exc)
        report["upstreams"] = {u.name: u.bound for u in self.upstreams}
        report["ok"] = ok
        return report

    async def stop(self) -> None:
        """Drain and stop (safe to call after a partial start)."""
        if self._route_watch is not None:
            self._route_watch.cancel()
        if self.smpp_reporter is not None:
            self.smpp_reporter.stop()
        if self.smpp is not None:
            # no new binds; every ESME gets an unbind and a few seconds to answer it
            await self.smpp.stop(5.0)
        if self.http is not None:
            self.http.should_exit = True
        if self.smtp is not None:
            await self.smtp.stop()
        if self.email_notifier is not None:
            self.email_notifier.stop()
        if self.webhooks is not None:
            self.webhooks.stop()
        if self._purging is not None:
            self._purging.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._purging
        await asyncio.gather(
            *(d.stop(DRAIN_SECONDS) for d in self.dispatchers), return_exceptions=True
        )
        if self.sweeper is not None:
            self.sweeper.stop()
        await asyncio.gather(*(u.stop() for u in self.upstreams), return_exceptions=True)
        for task in self._tasks:
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(task), 5)
            task.cancel()
        if self.simulator is not None:
            await self.simulator.stop()
        if self.store is not None:
            await self.store.close()
            self.store = None


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


async def run_gateway(config: Config, *, demo_hint: bool = False) -> int:
    """Run until SIGTERM/SIGINT; return the process exit code."""
    lg = config.logging
    setup_logging(str(lg.level), str(lg.format), str(lg.file) if lg.file else "")
    gateway = Gateway(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, gateway.reload_routes)
    await gateway.start()
    settle_heap()
    log(
        logger,
        logging.INFO,
        "teleway is running",
        node=config.gateway.node_name,
        database=mask_url(config.database.url),
        event_loop=type(asyncio.get_running_loop()).__module__.partition(".")[0],
    )
    for what, where in gateway.listening:
        log(logger, logging.INFO, f"listening: {what} on {where}")
    for upstream in gateway.upstreams:
        s = upstream.settings
        log(logger, logging.INFO, f"upstream {s.name}: {s.host}:{s.port} as {s.system_id}")
    if demo_hint:
        here = Path.cwd()
        prefix = "" if os.environ.get("VIRTUAL_ENV") else f"{here / '.venv/bin'}/"
        logger.info(
            "send a first message from another terminal:\n"
            '    %steleway send --account demo --to +17816170000 --report "Hello from teleway"\n'
            "    %steleway status <message id>     # watch it reach DELIVERED\n"
            "%s",
            prefix,
            prefix,
            _demo_doors(config),
        )
    await stop.wait()
    logger.info("stopping: draining work in flight (up to %.0f s)", DRAIN_SECONDS)
    await gateway.stop()
    logger.info("stopped")
    return 0


async def submit_from_cli(
    config: Config,
    *,
    account: str,
    recipients: Sequence[str],
    subject: str,
    sender_id: str | None,
    report: bool,
    text: str,
) -> Accepted:
    store = await _open(config)
    try:
        found = await Directory(store.engine).account_by_name(account)
        if found is None:
            raise ValueError(f"no account named {account!r} (see `teleway admin account list`)")
        parsed: list[Recipient] = []
        for item in recipients:
            number, _, device = item.partition("@")
            try:
                parsed.append(Recipient(number=number, device=Device(device.lower() or "sms")))
            except ValueError:
                raise ValueError(
                    f"unknown device {device!r} in {item!r}: use sms, business, mobile, home or fax"
                ) from None
        submission = Submission(
            account=found,
            origin=Origin.CLI,
            submitter=f"cli:{_login_name()}",
            recipients=tuple(parsed),
            content=Content(text=text, subject=subject),
            options=Options(
                sender_id=sender_id, report=ReportOn.FINAL if report else ReportOn.NONE
            ),
        )
        try:
            return await accept(
                submission, store=store.messages, clock=SystemClock(), ids=RandomIds()
            )
        except SubmissionRejected as exc:
            raise ValueError(f"message refused: {exc}") from exc
        except StoreUnavailable as exc:
            raise GatewayError(f"the store did not take the message: {exc}") from exc
    finally:
        await store.close()


def _demo_doors(config: Config) -> str:
    """The other ways in, with the demo provisioning's (public) credentials."""
    lines = []
    listeners = config.listeners
    if listeners.http.enabled:
        lines.append(
            f"portal: http://{listeners.http.host}:{listeners.http.port}/ "
            "(user demo, password demo-portal-pass); REST API docs at /api/v1/docs"
        )
    if listeners.smtp.enabled:
        domain = config.gateway.domains[0] if config.gateway.domains else "teleway.localhost"
        lines.append(
            f"e-mail: swaks --server {listeners.smtp.host}:{listeners.smtp.port} "
            f"--from you@example.com --to 17816170000@sms.{domain} --header 'Subject: Hi'"
        )
    if listeners.smpp.enabled:
        lines.append(
            f"SMPP: bind to {listeners.smpp.host}:{listeners.smpp.port} "
            "as system_id demo, password demo1234"
        )
    return "\n".join(f"    {line}" for line in lines)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


async def message_status(config: Config, message_id: str) -> dict[str, Any]:
    store = await _open(config)
    try:
        message = await store.messages.get_message(message_id)
        if message is None:
            raise GatewayError(f"no message with id {message_id}")
        deliveries = []
        for d in await store.messages.deliveries_of(message_id):
            events = await store.messages.events_of(d.id)
            deliveries.append(
                {
                    "id": d.id,
                    "recipient": d.recipient,
                    "device": str(d.device),
                    "state": str(d.state),
                    "attempts": d.attempts,
                    "error": d.error,
                    "upstream_ids": list(d.upstream_ids),
                    "events": [
                        {
                            "at": e.at.isoformat(timespec="milliseconds"),
                            "from": str(e.from_state) if e.from_state else None,
                            "to": str(e.to_state),
                            "reason": e.reason,
                        }
                        for e in events
                    ],
                }
            )
        return {
            "id": message.id,
            "origin": str(message.origin),
            "submitter": message.submitter,
            "created_at": message.created_at.isoformat(),
            "deliveries": deliveries,
        }
    finally:
        await store.close()
