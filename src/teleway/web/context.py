"""`WebContext`: everything the HTTP handlers (REST API and portal) are given.

`runtime/gateway.py` is the only place that builds one; tests build one around a real store.
The handlers never open a database, read the configuration file or start a task themselves:
what they may touch is listed here, so the web layer stays a thin adapter over the store and
`accept()`.

The store classes are named for typing only (`TYPE_CHECKING`): at run time `web/` imports
nothing from `store/` or `runtime/`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from teleway.core.model import Accepted, Delivery, Submission
from teleway.core.ports import BlobStore, Clock, IdSource, WorkQueue

if TYPE_CHECKING:
    from teleway.store.api_keys import ApiKeys
    from teleway.store.directory import Directory
    from teleway.store.history import History
    from teleway.store.idempotency import IdempotencyKeys
    from teleway.store.messages import SqlMessageStore
    from teleway.store.webhooks import WebhookAttempts

Accept = Callable[[Submission], Awaitable[Accepted]]
"""Hand a submission over; returns once it is committed. Raises `SubmissionRejected` (invalid:
a 4xx answer), `StoreUnavailable` / `StoreFull` (temporary: 503)."""

MetricsSource = Callable[[], tuple[bytes, str]]
"""The Prometheus exposition and its content type, for /metrics."""

HealthSource = Callable[[], Awaitable[dict[str, Any]]]
"""The gateway's health report; `ok` false means 503 on /healthz."""

UpstreamStatus = Callable[[], dict[str, bool]]
"""Upstream name -> bound right now (dashboard)."""


class CancelQueued(Protocol):
    """QUEUED -> CANCELLED in one conditional write (store.smpp_ops.SmppOperations.cancel):
    None when the delivery was no longer QUEUED (a dispatcher leased it meanwhile)."""

    async def __call__(
        self, delivery_id: str, *, now: datetime, reason: str
    ) -> Delivery | None: ...


class WebMetrics(Protocol):
    """What the web layer counts (implemented by runtime.metrics.Metrics)."""

    def http_request(self, route: str, method: str, status: int, seconds: float) -> None: ...


class _NoMetrics:
    def http_request(self, route: str, method: str, status: int, seconds: float) -> None:
        return None


@dataclass(frozen=True, kw_only=True)
class ApiSettings:
    """REST API limits (`[listeners.http]` in the configuration)."""

    rate_limit: float = 20.0  # requests per second per API key (token bucket refill)
    rate_burst: int = 40  # bucket size
    max_body_bytes: int = 10 * 1024 * 1024  # multipart with fax documents / audio included
    max_recipients: int = 1000  # per request, whatever the account allows (accept() checks that)
    # [security]: failed authentications per client address within the window, then 429
    auth_fail_limit: int = 5
    auth_fail_window_seconds: float = 300.0


@dataclass(frozen=True, kw_only=True)
class WebContext:
    """The dependencies of every web handler. Frozen: built once per HTTP listener."""

    messages: SqlMessageStore  # core.ports.MessageStore, plus list_messages
    queue: WorkQueue  # DELETE /messages/{id}: transition to CANCELLED; dashboard queue depth
    directory: Directory  # accounts, users, senders, networks, SMPP credentials, audit log
    accept: Accept
    blobs: BlobStore  # attachments (fax documents, audio) of HTTP submissions
    clock: Clock
    ids: IdSource
    history: History  # message search, message detail, dashboard counts, usage, CSV
    api_keys: ApiKeys
    idempotency: IdempotencyKeys
    webhooks: WebhookAttempts  # the log of webhook calls, for the portal
    outbox: Any = None  # core.ports.Outbox: reports and replies waiting to be sent back
    # cancelling what is still queued; None: WorkQueue.transition (which may also end a
    # delivery a dispatcher leased between the read and the write)
    cancel_queued: CancelQueued | None = None
    health: HealthSource | None = None
    metrics_text: MetricsSource | None = None  # None: /metrics not served
    metrics: WebMetrics = field(default_factory=_NoMetrics)
    upstreams: UpstreamStatus = dict
    public_url: str = ""  # how customers reach this listener (links in e-mails, OpenAPI servers)
    domains: tuple[str, ...] = ("teleway.localhost",)  # e-mail domains, for help texts
    tls: bool = False  # the listener speaks HTTPS: cookies are marked Secure
    api: ApiSettings = field(default_factory=ApiSettings)
    # portal sessions (store.web_sessions.WebSessions); None: the portal builds its own
    web_sessions: Any = None
    # the SMS route table in force (core.routing.RouteTable), for the portal's status page
    routes: Callable[[], Any] | None = None
