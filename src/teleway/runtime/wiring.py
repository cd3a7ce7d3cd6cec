"""System implementations of the small core ports: the clock and the id source."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from teleway.core.ids import make_id


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class RandomIds:
    """Time-ordered ids with 80 bits of OS randomness: unique across nodes without coordination."""

    def new_id(self) -> str:
        return make_id(time.time_ns() // 1_000_000, os.urandom(10))
