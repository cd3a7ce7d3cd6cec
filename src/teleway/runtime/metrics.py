"""Prometheus metrics, served on the HTTP listener at /metrics.

One registry per gateway (not the global one) so tests can run several gateways in one process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from teleway.store.writer import Writer

disable_created_metrics()  # type: ignore[no-untyped-call]  # `_created` series double the output and nobody graphs them

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.accepted = Counter(
            "teleway_messages_accepted", "Messages committed by accept()", ["origin"], registry=r
        )
        self.accept_rejected = Counter(
            "teleway_submissions_rejected",
            "Submissions refused by validation",
            ["origin"],
            registry=r,
        )
        self.accept_seconds = Histogram(
            "teleway_accept_seconds",
            "Time from accept() call to durable commit",
            ["origin"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.deliveries = Counter(
            "teleway_deliveries_final",
            "Deliveries that reached a final state",
            ["channel", "state", "reason"],
            registry=r,
        )
        self.handoff = Counter(
            "teleway_handoff",
            "New deliveries due at once: handed to a local dispatcher with their commit "
            "(handed), or stored queued for a lease (queued: no local room)",
            ["result"],
            registry=r,
        )
        self.attempts = Counter(
            "teleway_delivery_attempts",
            "Delivery attempts by channel and result",
            ["channel", "result"],
            registry=r,
        )
        self.delivery_seconds = Histogram(
            "teleway_delivery_seconds",
            "Time from acceptance to final state",
            ["channel", "state"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "teleway_queue_depth", "Deliveries per non-final state", ["state"], registry=r
        )
        self.upstream_bound = Gauge(
            "teleway_upstream_bound", "1 when the upstream bind is up", ["upstream"], registry=r
        )
        self.upstream_submits = Counter(
            "teleway_upstream_submits",
            "submit_sm sent to upstreams by command_status",
            ["upstream", "status"],
            registry=r,
        )
        self.possible_duplicates = Counter(
            "teleway_possible_duplicates",
            "Submits re-sent after a lost response (the upstream may have it twice)",
            ["upstream"],
            registry=r,
        )
        self.inbound = Counter(
            "teleway_inbound_sms",
            "Replies from phones (MO) by result: routed, unrouted, incomplete, malformed, error",
            ["upstream", "result"],
            registry=r,
        )
        self.route_reloads = Counter(
            "teleway_route_reloads",
            "Route table reloads by result (ok, invalid)",
            ["result"],
            registry=r,
        )
        self.receipts = Counter(
            "teleway_receipts",
            "Delivery receipts from upstreams",
            ["upstream", "stat", "matched"],
            registry=r,
        )

        self.smtp_replies = Counter(
            "teleway_smtp_replies",
            "SMTP replies by command and reply code",
            ["command", "code"],
            registry=r,
        )
        self.email_notifications = Counter(
            "teleway_email_notifications",
            "E-mails to senders (outcome reports, replies) by result",
            ["kind", "result"],
            registry=r,
        )

        self.smpp_requests = Counter(
            "teleway_smpp_requests",
            "Requests of ESMEs bound to the SMPP server, by command and command_status",
            ["command", "status"],
            registry=r,
        )
        self.smpp_binds = Gauge(
            "teleway_smpp_binds", "ESME binds live on this node", ["bind_type"], registry=r
        )
        self.smpp_bind_failures = Counter(
            "teleway_smpp_bind_failures", "Refused ESME binds by reason", ["reason"], registry=r
        )
        self.smpp_reports = Counter(
            "teleway_smpp_reports",
            "deliver_sm to ESMEs (receipts, replies) by result",
            ["kind", "result"],
            registry=r,
        )

        self.http_requests = Counter(
            "teleway_http_requests",
            "HTTP requests (REST API, portal) by route, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "teleway_http_seconds",
            "HTTP request handling time by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.webhooks = Counter(
            "teleway_webhooks",
            "Webhook POSTs by result (delivered, retry, expired, gone, refused, no_url)",
            ["result"],
            registry=r,
        )

    def http_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """`web.context.WebMetrics`: one request handled by the HTTP listener."""
        self.http_requests.labels(route, method, str(status)).inc()
        self.http_seconds.labels(route).observe(seconds)

    def watch_store(self, writer: Writer) -> None:
        """The store writer's series, read from it at each scrape (`StoreCollector`)."""
        self.registry.register(StoreCollector(writer))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class StoreCollector:
    """The store writer's state at scrape time: commits, what waits for the writer, and on
    SQLite its commit process (store.commit_process)."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer

    def collect(self) -> Iterator[Metric]:
        writer = self._writer
        yield CounterMetricFamily(
            "teleway_store_commits",
            "Transactions committed by the store's writer (group commits)",
            value=writer.commits,
        )
        yield GaugeMetricFamily(
            "teleway_store_writer_pending",
            "Writes waiting for the store's writer (past max_pending: StoreFull)",
            value=writer.pending,
        )
        process = writer.commit_process
        if process is not None:
            yield GaugeMetricFamily(
                "teleway_store_commit_process_up",
                "1 while the SQLite commit process runs (it starts with the first new rows)",
                value=1 if process.running else 0,
            )
            yield CounterMetricFamily(
                "teleway_store_commit_process_starts",
                "SQLite commit processes started (more than one: one exited and was replaced)",
                value=process.starts,
            )


class SmppServerMetrics:
    """The SMPP server's and its reporter's observer hooks, as Prometheus series."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics
        self._requests: dict[tuple[str, int], Any] = {}  # label lookups cost more than inc()

    def request(self, command: str, status: int) -> None:
        child = self._requests.get((command, status))
        if child is None:
            child = self._m.smpp_requests.labels(command, f"0x{status:02X}")
            self._requests[command, status] = child
        child.inc()

    def binds(self, bind_type: str, delta: int) -> None:
        self._m.smpp_binds.labels(bind_type).inc(delta)

    def bind_failed(self, reason: str) -> None:
        self._m.smpp_bind_failures.labels(reason).inc()

    def sent(self, kind: str, result: str) -> None:
        self._m.smpp_reports.labels(kind, result).inc()
