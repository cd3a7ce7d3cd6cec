"""System implementations of the small core ports: the clock and the id source."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

from teleway.core.ids import make_id
from teleway.runtime.config import EventLoop

T = TypeVar("T")


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class RandomIds:
    """Time-ordered ids with 80 bits of OS randomness: unique across nodes without coordination.

    The randomness is read from the OS 4 KiB at a time (one system call per 409 ids), into a
    pool of each thread's own, so no two callers can ever be handed the same octets."""

    _POOL = 4090  # 409 ids' worth

    def __init__(self) -> None:
        self._local = threading.local()

    def new_id(self) -> str:
        local = self._local
        try:
            pool, offset = local.pool, local.offset
        except AttributeError:
            pool, offset = b"", 0
        if offset >= len(pool):
            pool, offset = os.urandom(self._POOL), 0
            local.pool = pool
        local.offset = offset + 10
        return make_id(time.time_ns() // 1_000_000, pool[offset : offset + 10])


def settle_heap() -> None:
    """Call once everything is started, before serving.

    * The objects built so far (modules, configuration, SQLAlchemy's and Jinja's caches, ...)
      live as long as the process, so they are moved out of the cyclic garbage collector's
      sight: its full collections then scan only what was made since. Under load they took
      50-70 ms each, every second or two, stalling every connection (the SMPP server's p99).
    * The youngest generation is collected after 50,000 more container objects instead of
      700: a window of requests in flight holds a few thousand short-lived objects, which made
      the collector run about a hundred times a second for nothing (they die by themselves)
      and cost 4-5 % of the SMPP server's CPU. Real cycles are still collected, later.
    * The interpreter lock is handed to a waiting thread after 0.5 ms instead of 5 ms
      (`SWITCH_INTERVAL`). The store's writer thread takes the lock back after every SQLite
      statement and COMMIT (it runs them with the lock released); while the event loop thread
      was busy it waited up to the full interval each time: 9-11 ms per SMPP batch of about
      125 messages, of which 3.3-4 ms its own CPU. At 0.5 ms: 6.3-7.7 ms per batch, and 13-38 %
      more submit_sm/s in four interleaved pairs of runs on this 2-core machine.
    """
    sys.setswitchinterval(SWITCH_INTERVAL)
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, older, oldest)


YOUNG_GENERATION_THRESHOLD = 50_000  # CPython's default is 700
SWITCH_INTERVAL = 0.0005  # seconds; CPython's default is 0.005


def run(main: Coroutine[Any, Any, T], event_loop: EventLoop) -> T:
    """`asyncio.run(main)` on the configured event loop implementation (`[gateway]
    event_loop`). uvloop is the same asyncio API on libuv: its sockets, transports and
    callbacks cost much less of the one thread the gateway's I/O runs on. Measured with
    bench/smtp.py (10 connections): about 20 % more e-mails per second for the same listener
    and store, and the same gain for a do-nothing aiosmtpd server."""
    if event_loop is EventLoop.UVLOOP:
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
