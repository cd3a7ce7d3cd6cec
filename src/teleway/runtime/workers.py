"""The workers that move deliveries through their life.

`Dispatcher` leases due deliveries from the durable queue and hands each to the channel for its
device; the deliveries submitted during one event-loop turn are released together (one
`WorkQueue.release_many`: one store write instead of one per delivery; a lone one waits only for
the end of that turn); `Outcomes` applies what channels report later (receipts); `Sweeper` expires deliveries
whose validity ended and refreshes the queue-depth gauge. A crash at any point loses nothing:
a leased delivery whose worker died is leased again when the lease expires.

`LocalHandoff` lets `accept()` give new deliveries straight to this process's dispatchers
(`core.ports.Handoff`): they are committed already leased, so between the commit of a message
and its submit there is no second store write. A dispatcher takes them while it has room
(`handoff_limit` claimed or waiting, at most), keeps up (none waits for a slot since a quarter
of its lease) and found no due work in the store on its last look (that work came first: new
deliveries then queue behind it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import OrderedDict, deque
from collections.abc import Coroutine, Sequence
from datetime import timedelta
from typing import Any

from prometheus_client import Counter

from teleway.core.model import Delivery, DeliveryState, Device, Message
from teleway.core.outcome import (
    Channel,
    Delivered,
    Outcome,
    PermanentFailure,
    Submitted,
    TemporaryFailure,
)
from teleway.core.ports import Claim, Clock, Lease, MessageStore, Release, WorkQueue
from teleway.core.retry import RetryPolicy
from teleway.runtime.logs import log
from teleway.runtime.metrics import Metrics

logger = logging.getLogger("teleway.dispatch")

HANDOFF_LIMIT = 1024  # new deliveries one dispatcher holds claimed or waiting to start, at most


class MessageCache:
    """A small LRU of messages: deliveries of one message share it (100 recipients, one read)."""

    def __init__(self, messages: MessageStore, size: int = 1024) -> None:
        self._messages = messages
        self._size = size
        self._items: OrderedDict[str, Message] = OrderedDict()

    async def get(self, message_id: str) -> Message | None:
        message = self._items.get(message_id)
        if message is not None:
            self._items.move_to_end(message_id)
            return message
        message = await self._messages.get_message(message_id)
        if message is not None:
            self._items[message_id] = message
            if len(self._items) > self._size:
                self._items.popitem(last=False)
        return message


class Dispatcher:
    def __init__(
        self,
        *,
        queue: WorkQueue,
        messages: MessageStore,
        channels: list[Channel],
        clock: Clock,
        metrics: Metrics,
        worker: str,
        concurrency: int = 64,
        lease_for: timedelta = timedelta(seconds=60),
        poll_interval: float = 1.0,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
        handoff_limit: int = HANDOFF_LIMIT,
    ) -> None:
        self.queue = queue
        self.cache = MessageCache(messages)
        self.channels = channels
        self.clock = clock
        self.metrics = metrics
        self.worker = worker
        self.concurrency = concurrency
        self.lease_for = lease_for
        self.poll_interval = poll_interval
        self.retry = retry or RetryPolicy()
        self.rng = rng or random.Random()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._run_done = asyncio.Event()  # set while run() is not running
        self._run_done.set()
        # releases asked for during this event-loop turn, stored together at its end
        self._releasing: list[tuple[Release, asyncio.Future[Delivery | None]]] = []
        self._release_tasks: set[asyncio.Task[None]] = set()
        # Attempts whose channel has not answered yet: what `concurrency` bounds. An attempt
        # waiting only for its release to be stored no longer holds a slot, so a slow commit
        # does not hold back the next submits (its lease is kept until the release commits).
        self._sending: set[asyncio.Task[None]] = set()
        # the handoff (see LocalHandoff): claims not yet handed or withdrawn, and leases handed
        # over but not started yet (all slots busy)
        self.handoff_limit = handoff_limit
        self._claim = Claim(worker=worker, lease_for=lease_for)
        self._claimed = 0
        self._handed: deque[Lease] = deque()
        self._backlog = False  # the last lease() found due work in the store
        self._keeping_up = lease_for * 3 / 4  # see claim()
        self._closed = False  # stop() returned: nothing handed over is started any more

    def _channel_for(self, delivery: Delivery) -> Channel | None:
        for channel in self.channels:
            if delivery.device in channel.devices and channel.ready:
                return channel
        return None

    async def run(self) -> None:
        """Lease and dispatch until `stop()`."""
        self._run_done.clear()
        try:
            await self._lease_and_dispatch()
        finally:
            self._run_done.set()

    async def _lease_and_dispatch(self) -> None:
        while not self._stopping.is_set():
            free = self.concurrency - len(self._sending) - len(self._handed)
            ready = frozenset(d for c in self.channels if c.ready for d in c.devices)
            if free <= 0 or not ready:
                self._slot_free.clear()
                await self._wait_any(self._slot_free.wait() if free <= 0 else None)
                continue
            try:
                leases = await self.queue.lease(
                    worker=self.worker,
                    now=self.clock.now(),
                    limit=free,
                    lease_for=self.lease_for,
                    devices=ready,
                )
            except Exception as exc:  # store down: log, back off, keep running
                log(logger, logging.ERROR, "cannot lease work", error=repr(exc))
                await self._wait_any(None)
                continue
            # work waiting in the store goes first: new deliveries queue behind it meanwhile
            self._backlog = bool(leases)
            if not leases:
                await self._wait_any(self.queue.wait_for_work(self.poll_interval))
                continue
            for lease in leases:
                self._start(lease)

    def _start(self, lease: Lease) -> None:
        task = asyncio.create_task(self._attempt(lease))
        self._tasks.add(task)
        self._sending.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._sent(task)

    def _sent(self, task: asyncio.Task[Any] | None) -> None:
        """An attempt's channel answered (or the attempt ended): its slot is free."""
        if task in self._sending:
            self._sending.discard(task)
            self._slot_free.set()
            if self._handed:
                self._start_handed()

    # -- the handoff (core.ports.Handoff, through LocalHandoff) ---------------------------

    def claim(self, device: Device) -> Claim | None:
        """Room for one new delivery to `device`, or None (see the module docstring)."""
        if (
            self._backlog
            or self._claimed + len(self._handed) >= self.handoff_limit
            or self._stopping.is_set()
            or self._run_done.is_set()  # not running
        ):
            return None
        if self._handed and self._handed[0].expires_at < self.clock.now() + self._keeping_up:
            return None  # the oldest waiting one waited a quarter of its lease: not keeping up
        for channel in self.channels:
            if device in channel.devices and channel.ready:
                self._claimed += 1
                return self._claim
        return None

    def hand(self, leases: Sequence[Lease]) -> None:
        """Claimed deliveries, committed leased to this worker: start them as slots allow."""
        self._claimed -= len(leases)
        if self._closed:
            log(
                logger,
                logging.WARNING,
                "handed-off deliveries not started (dispatcher stopped); "
                "taken again when their lease expires",
                deliveries=len(leases),
            )
            return
        self._handed.extend(leases)
        self._start_handed()

    def withdraw(self, leases: Sequence[Lease]) -> None:
        self._claimed -= len(leases)

    def _start_handed(self) -> None:
        """Start waiting handed-off leases while slots are free. One with less than half its
        lease left is not started: it may not finish in time, and once its lease expires the
        store gives it out again (started here too, it could be sent twice)."""
        if self._closed:
            return
        fresh_after = None
        while self._handed and len(self._sending) < self.concurrency:
            lease = self._handed.popleft()
            if fresh_after is None:
                fresh_after = self.clock.now() + self.lease_for / 2
            if lease.expires_at < fresh_after:
                log(
                    logger,
                    logging.WARNING,
                    "handed-off delivery waited too long; taken again when its lease expires",
                    delivery=lease.delivery.id,
                )
                continue
            self._start(lease)

    async def _wait_any(self, awaitable: Coroutine[Any, Any, Any] | None) -> None:
        """Wait for `awaitable`, for stop(), or for one poll interval, whichever comes first."""
        waiters = {asyncio.ensure_future(self._stopping.wait())}
        if awaitable is not None:
            waiters.add(asyncio.ensure_future(awaitable))
        _, pending = await asyncio.wait(
            waiters, timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop leasing, let attempts in progress finish (up to `timeout`), cancel the rest.

        Cancelled attempts keep their lease until it expires; then another worker (or this one
        after a restart) takes them over."""
        self._stopping.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # a lease taken just before stop() still starts its attempts: wait for the loop first
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._run_done.wait(), timeout)
        # handed-off deliveries waiting for a slot are started as slots free, like attempts in
        # progress; what is left at the deadline keeps its lease until it expires
        while self._tasks:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await asyncio.wait(
                set(self._tasks), timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
        self._closed = True
        if self._handed:
            log(
                logger,
                logging.WARNING,
                "handed-off deliveries not started before the drain ended; "
                "taken again when their lease expires",
                deliveries=len(self._handed),
            )
            self._handed.clear()
        pending = set(self._tasks)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def _attempt(self, lease: Lease) -> None:
        """One attempt: the channel's outcome (holding a slot), then storing it."""
        try:
            try:
                outcome = await self._send(lease)
            finally:
                self._sent(asyncio.current_task())
            await self._apply(lease.delivery, outcome)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the store failed: the lease expires, the delivery is retried
            log(
                logger,
                logging.ERROR,
                "attempt not recorded; retried when its lease expires",
                delivery=lease.delivery.id,
                error=repr(exc),
            )

    async def _send(self, lease: Lease) -> Outcome:
        delivery = lease.delivery
        channel = self._channel_for(delivery)
        message = lease.message or await self.cache.get(delivery.message_id)
        if message is None:  # cannot happen with a consistent store; never crash on it
            return PermanentFailure(reason="message missing", channel="-")
        if channel is None:
            return TemporaryFailure(reason="no channel ready", channel="-")
        try:
            return await channel.send(delivery, message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("channel %s failed on delivery %s", channel.name, delivery.id)
            return TemporaryFailure(reason=f"internal error: {exc!r}", channel=channel.name)

    async def _apply(self, delivery: Delivery, outcome: Outcome) -> None:
        now = self.clock.now()
        q = self.queue
        kind = type(outcome).__name__
        self.metrics.attempts.labels(outcome.channel, kind).inc()
        if isinstance(outcome, Submitted):
            result = await self._release(
                Release(
                    delivery_id=delivery.id,
                    channel=outcome.channel,
                    upstream_ids=outcome.upstream_ids,
                    reason=outcome.detail or f"submitted to {outcome.channel}",
                )
            )
            if result is not None and logger.isEnabledFor(logging.INFO):
                log(
                    logger,
                    logging.INFO,
                    "SENT",
                    delivery=delivery.id,
                    recipient=delivery.recipient,
                    detail=outcome.detail,
                )
        elif isinstance(outcome, Delivered):
            result = await q.transition(
                delivery.id,
                DeliveryState.DELIVERED,
                now=now,
                worker=self.worker,
                channel=outcome.channel,
                reason=outcome.detail or "delivered",
            )
            self._final(result, outcome.channel, "delivered")
        elif isinstance(outcome, TemporaryFailure):
            when = outcome.retry_at or self.retry.next_attempt(
                attempts=delivery.attempts,
                now=now,
                valid_until=delivery.valid_until,
                draw=self.rng.random(),
            )
            if when is None or when >= delivery.valid_until:
                result = await q.transition(
                    delivery.id,
                    DeliveryState.EXPIRED,
                    now=now,
                    worker=self.worker,
                    error=outcome.reason,
                    reason=f"validity ended after: {outcome.reason}",
                )
                self._final(result, outcome.channel, "validity")
            else:
                result = await q.transition(
                    delivery.id,
                    DeliveryState.QUEUED,
                    now=now,
                    worker=self.worker,
                    next_attempt_at=when,
                    error=outcome.reason,
                    reason=f"retry at {when.isoformat(timespec='seconds')}: {outcome.reason}",
                )
        else:
            state = DeliveryState.REJECTED if outcome.rejected else DeliveryState.UNDELIVERABLE
            result = await q.transition(
                delivery.id,
                state,
                now=now,
                worker=self.worker,
                channel=outcome.channel,
                error=outcome.code or outcome.reason,
                reason=outcome.reason,
            )
            self._final(result, outcome.channel, outcome.code or "failed")
        if result is None:
            log(
                logger,
                logging.WARNING,
                "lease lost before the outcome was stored",
                delivery=delivery.id,
                outcome=kind,
            )

    async def _release(self, release: Release) -> Delivery | None:
        """Release with the others of this event-loop turn (see `_release_batch`)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Delivery | None] = loop.create_future()
        self._releasing.append((release, future))
        if len(self._releasing) == 1:
            loop.call_soon(self._start_release_batch)
        return await future

    def _start_release_batch(self) -> None:
        batch, self._releasing = self._releasing, []
        task = asyncio.create_task(self._release_batch(batch))
        self._release_tasks.add(task)
        task.add_done_callback(self._release_tasks.discard)

    async def _release_batch(
        self, batch: list[tuple[Release, asyncio.Future[Delivery | None]]]
    ) -> None:
        """One `release_many` for the releases of one turn. Each caller gets its own result,
        or the store's error (its attempt is then retried when the lease expires)."""
        try:
            results = await self.queue.release_many(
                [release for release, _ in batch], worker=self.worker, now=self.clock.now()
            )
        except asyncio.CancelledError:  # the loop is closing: nobody waits forever
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # its attempt may have been cancelled meanwhile
                future.set_result(result)

    def _final(self, delivery: Delivery | None, channel: str, reason: str) -> None:
        if delivery is None:
            return
        self.metrics.deliveries.labels(channel, str(delivery.state), reason).inc()
        elapsed = (delivery.updated_at - delivery.created_at).total_seconds()
        self.metrics.delivery_seconds.labels(channel, str(delivery.state)).observe(elapsed)


class LocalHandoff:
    """`core.ports.Handoff` over this process's dispatchers: each new delivery goes to the next
    one, in turn, that has room and a ready channel for its device."""

    def __init__(self, dispatchers: Sequence[Dispatcher], metrics: Metrics | None = None) -> None:
        self._dispatchers = tuple(dispatchers)
        self._by_worker = {d.worker: d for d in self._dispatchers}
        self._turn = 0
        self._handed: Counter | None = None
        self._queued: Counter | None = None
        if metrics is not None:
            self._handed = metrics.handoff.labels("handed")
            self._queued = metrics.handoff.labels("queued")

    def claim(self, device: Device) -> Claim | None:
        dispatchers = self._dispatchers
        count = len(dispatchers)
        for _ in range(count):
            dispatcher = dispatchers[self._turn]
            self._turn = (self._turn + 1) % count
            claim = dispatcher.claim(device)
            if claim is not None:
                return claim
        if self._queued is not None:
            self._queued.inc()
        return None

    def hand(self, leases: Sequence[Lease]) -> None:
        if self._handed is not None:
            self._handed.inc(len(leases))
        for group, dispatcher in self._per_worker(leases):
            dispatcher.hand(group)

    def withdraw(self, leases: Sequence[Lease]) -> None:
        for group, dispatcher in self._per_worker(leases):
            dispatcher.withdraw(group)

    def _per_worker(self, leases: Sequence[Lease]) -> list[tuple[list[Lease], Dispatcher]]:
        groups: dict[str, list[Lease]] = {}
        for lease in leases:
            groups.setdefault(lease.worker, []).append(lease)
        return [(group, self._by_worker[worker]) for worker, group in groups.items()]


class Sweeper:
    """Expires deliveries past their validity and keeps the queue-depth gauge current."""

    def __init__(self, *, queue: WorkQueue, clock: Clock, metrics: Metrics, interval: float = 5.0):
        self.queue = queue
        self.clock = clock
        self.metrics = metrics
        self.interval = interval
        self._stopping = asyncio.Event()

    async def sweep(self) -> int:
        expired = await self.queue.expire_due(now=self.clock.now())
        for delivery in expired:
            self.metrics.deliveries.labels(delivery.channel or "-", "expired", "validity").inc()
        depth = await self.queue.depth()
        for state in DeliveryState:
            if not state.is_final:
                self.metrics.queue_depth.labels(str(state)).set(depth.get(state, 0))
        return len(expired)

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.sweep()
            except Exception as exc:
                log(logger, logging.ERROR, "sweep failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)

    def stop(self) -> None:
        self._stopping.set()
