"""A wake-up shared by several kinds of waiters, each with its own sticky flag."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable


class OutboxSignal:
    """`set()` wakes every kind of waiter; each kind (e.g. each origin's reporter) clears only
    its own flag. A flag set while nobody of its kind waits makes that kind's next wait return
    at once, so no wake-up is lost between a lease and the next wait."""

    def __init__(self) -> None:
        self._flags: dict[Hashable, asyncio.Event] = {}

    def flag(self, kind: Hashable) -> asyncio.Event:
        found = self._flags.get(kind)
        if found is None:
            found = self._flags[kind] = asyncio.Event()
            found.set()  # a new kind of waiter looks once before sleeping
        return found

    def set(self) -> None:
        for flag in self._flags.values():
            flag.set()
