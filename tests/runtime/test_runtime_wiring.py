"""runtime.wiring: what `teleway serve` does to the interpreter once started."""

from __future__ import annotations

import gc
import sys

from teleway.runtime.wiring import SWITCH_INTERVAL, YOUNG_GENERATION_THRESHOLD, settle_heap


def test_settle_heap_freezes_start_up_objects_and_relaxes_the_young_generation() -> None:
    before = gc.get_threshold()
    interval = sys.getswitchinterval()
    kept = [object() for _ in range(10)], {"made": "at start-up"}
    try:
        settle_heap()
        assert sys.getswitchinterval() == SWITCH_INTERVAL
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, *before[1:])
        # what is made afterwards is still collected when it forms a cycle
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
        sys.setswitchinterval(interval)
    assert kept
