"""`Acceptor`: `core.accept()` with the gateway's clock, ids and metrics bound in.

Ingresses are handed `Acceptor.accept` and never build these objects themselves, so every
origin is counted the same way (accepted, rejected, time to durable commit).
"""

from __future__ import annotations

import time

from teleway.core.accept import SubmissionRejected, accept
from teleway.core.model import Accepted, Submission
from teleway.core.ports import Clock, IdSource, MessageStore
from teleway.runtime.metrics import Metrics


class Acceptor:
    def __init__(self, *, store: MessageStore, clock: Clock, ids: IdSource, metrics: Metrics):
        self.store = store
        self.clock = clock
        self.ids = ids
        self.metrics = metrics

    async def accept(self, submission: Submission) -> Accepted:
        origin = str(submission.origin)
        started = time.perf_counter()
        try:
            accepted = await accept(submission, store=self.store, clock=self.clock, ids=self.ids)
        except SubmissionRejected:
            self.metrics.accept_rejected.labels(origin).inc()
            raise
        self.metrics.accept_seconds.labels(origin).observe(time.perf_counter() - started)
        self.metrics.accepted.labels(origin).inc()
        return accepted
