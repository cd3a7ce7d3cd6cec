"""CPU seconds of a process and its living descendants, from /proc (Linux).

teleway on SQLite commits new rows in a child process (`store.commit_process`): its CPU is the
server's work, so the benchmarks count a server's whole process tree."""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat_seconds(stat: Path) -> float:
    """utime + stime from a /proc stat file (0 if the process exited meanwhile)."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def own_cpu_seconds(pid: int) -> float:
    """CPU seconds of every thread of `pid`."""
    return _stat_seconds(Path(f"/proc/{pid}/stat"))


def main_thread_cpu_seconds(pid: int) -> float:
    """CPU seconds of `pid`'s main thread (an asyncio server's event loop)."""
    return _stat_seconds(Path(f"/proc/{pid}/task/{pid}/stat"))


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def tree_cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds of `pid` (default: this process) and its living descendants."""
    pid = os.getpid() if pid is None else pid
    return own_cpu_seconds(pid) + sum(tree_cpu_seconds(child) for child in children(pid))
