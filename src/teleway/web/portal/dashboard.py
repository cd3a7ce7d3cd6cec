"""The dashboard: traffic and outcomes over time (server-side SVG), queue, upstream binds.

Account users see their own account's traffic and what of it is still on its way; operators see
every account, the whole queue's depth and the health report.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from teleway.core.model import DeliveryState, Role
from teleway.web.portal import charts
from teleway.web.portal.base import Portal, SessionUser


@dataclass(frozen=True)
class Period:
    label: str
    span: timedelta
    bucket: timedelta
    time_format: str


PERIODS = {
    "1h": Period("last hour", timedelta(hours=1), timedelta(minutes=2), "%H:%M"),
    "24h": Period("last 24 hours", timedelta(hours=24), timedelta(hours=1), "%H:%M"),
    "7d": Period("last 7 days", timedelta(days=7), timedelta(hours=6), "%a %H:%M"),
    "30d": Period("last 30 days", timedelta(days=30), timedelta(days=1), "%d %b"),
}
PENDING = (DeliveryState.ACCEPTED, DeliveryState.QUEUED, DeliveryState.IN_FLIGHT)


def _floor(moment: datetime, step: timedelta) -> datetime:
    seconds = step.total_seconds()
    stamp = moment.timestamp()
    return datetime.fromtimestamp(stamp - stamp % seconds, moment.tzinfo)


def routes(portal: Portal) -> list[Route]:
    ctx = portal.ctx

    async def dashboard(request: Request, session: SessionUser) -> Response:
        key = request.query_params.get("period", "24h")
        period = PERIODS.get(key) or PERIODS["24h"]
        account_id = portal.visible_account_id(session)
        now = ctx.clock.now()
        until = _floor(now, period.bucket) + period.bucket
        since = until - period.span
        points = await ctx.history.traffic(
            account_id=account_id,
            since=since,
            until=until,
            bucket_seconds=int(period.bucket.total_seconds()),
        )
        count = int(period.span / period.bucket)
        buckets = [since + period.bucket * i for i in range(count)]
        index = {b.timestamp(): i for i, b in enumerate(buckets)}
        by_channel: dict[str, list[int]] = {}
        by_state: dict[str, list[int]] = {str(s): [0] * count for s in DeliveryState}
        for p in points:
            i = index.get(p.start.timestamp())
            if i is None:
                continue
            by_channel.setdefault(p.channel, [0] * count)[i] += p.count
            by_state[str(p.state)][i] += p.count
        totals = await ctx.history.state_counts(account_id=account_id, since=since, until=until)
        upstreams = ctx.upstreams()
        depth = None
        health = None
        if session.user.role is Role.OPERATOR:
            depth = {str(k): v for k, v in (await ctx.queue.depth()).items()}
            if ctx.health is not None:
                health = await ctx.health()
        channel_names = [n for n, v in by_channel.items() if any(v)]
        state_names = [n for n, v in by_state.items() if any(v)]
        return portal.render(
            request,
            "dashboard.html",
            session,
            period_key=key if key in PERIODS else "24h",
            periods=PERIODS,
            period=period,
            traffic_chart=Markup(
                charts.stacked_bars(
                    f"Deliveries per channel, {period.label}",
                    buckets,
                    by_channel,
                    time_format=period.time_format,
                )
            ),
            outcome_chart=Markup(
                charts.stacked_bars(
                    f"Outcomes, {period.label}",
                    buckets,
                    by_state,
                    time_format=period.time_format,
                )
            ),
            channel_legend=charts.legend(channel_names),
            state_legend=charts.legend(state_names),
            totals={str(k): v for k, v in totals.items()},
            total=sum(totals.values()),
            pending=sum(totals.get(s, 0) for s in PENDING),
            delivered=totals.get(DeliveryState.DELIVERED, 0),
            failed=sum(
                v for s, v in totals.items() if s.is_final and s is not DeliveryState.DELIVERED
            ),
            upstreams=upstreams,
            depth=depth,
            health=health,
        )

    return [Route("/", portal.page(dashboard))]
