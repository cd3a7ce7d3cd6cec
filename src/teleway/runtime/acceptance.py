"""`Acceptor`: `core.accept()` with the gateway's clock, ids and metrics bound in.

Ingresses are handed `Acceptor.accept` and never build these objects themselves, so every
origin is counted the same way (accepted, rejected, time to durable commit). With `handoff` set
(the gateway sets this process's dispatchers), new deliveries due now are committed already
leased to a local dispatcher and started right after the commit (see `core.ports.Handoff`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from teleway.core.accept import SubmissionRejected, accept, accept_many
from teleway.core.model import Accepted, Submission
from teleway.core.ports import Clock, Handoff, IdSource, MessageStore
from teleway.runtime.metrics import Metrics


class Acceptor:
    def __init__(
        self,
        *,
        store: MessageStore,
        clock: Clock,
        ids: IdSource,
        metrics: Metrics,
        handoff: Handoff | None = None,
    ):
        self.store = store
        self.clock = clock
        self.ids = ids
        self.metrics = metrics
        self.handoff = handoff
        self._series: dict[str, tuple[Any, Any, Any]] = {}  # label lookups cost more than inc()

    def _counters(self, origin: str) -> tuple[Any, Any, Any]:
        """(accepted, rejected, seconds) series of one origin."""
        series = self._series.get(origin)
        if series is None:
            m = self.metrics
            series = (
                m.accepted.labels(origin),
                m.accept_rejected.labels(origin),
                m.accept_seconds.labels(origin),
            )
            self._series[origin] = series
        return series

    async def accept(self, submission: Submission) -> Accepted:
        accepted_total, rejected_total, seconds = self._counters(submission.origin)
        started = time.perf_counter()
        try:
            accepted = await accept(
                submission, store=self.store, clock=self.clock, ids=self.ids, handoff=self.handoff
            )
        except SubmissionRejected:
            rejected_total.inc()
            raise
        seconds.observe(time.perf_counter() - started)
        accepted_total.inc()
        return accepted

    async def accept_many(
        self, submissions: Sequence[Submission]
    ) -> list[Accepted | SubmissionRejected]:
        """`core.accept.accept_many`, counted per submission like `accept`."""
        started = time.perf_counter()
        results = await accept_many(
            submissions, store=self.store, clock=self.clock, ids=self.ids, handoff=self.handoff
        )
        elapsed = time.perf_counter() - started
        counts: dict[str, list[int]] = {}  # origin -> [accepted, rejected]
        for submission, result in zip(submissions, results, strict=True):
            count = counts.setdefault(submission.origin, [0, 0])
            count[isinstance(result, SubmissionRejected)] += 1
        for origin, (accepted, rejected) in counts.items():
            accepted_total, rejected_total, seconds = self._counters(origin)
            if accepted:
                accepted_total.inc(accepted)
                for _ in range(accepted):  # each message waited this long for its commit
                    seconds.observe(elapsed)
            if rejected:
                rejected_total.inc(rejected)
        return results
