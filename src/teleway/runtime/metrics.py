"""Prometheus metrics, served on the HTTP listener at /metrics.

One registry per gateway (not the global one) so tests can run several gateways in one process.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

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
        self.receipts = Counter(
            "teleway_receipts",
            "Delivery receipts from upstreams",
            ["upstream", "stat", "matched"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
