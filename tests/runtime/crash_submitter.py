"""Submits messages through accept() and records each acknowledged one (fsynced) before the next.

Usage: python crash_submitter.py DATABASE_URL ACCOUNT ACKED_FILE FIRST LAST
A line in ACKED_FILE means accept() returned: the message must never be lost.
"""

from __future__ import annotations

import asyncio
import os
import sys

from teleway.core.accept import accept
from teleway.core.model import Content, Options, Origin, Recipient, ReportOn, Submission
from teleway.runtime.wiring import RandomIds, SystemClock
from teleway.store import open_store
from teleway.store.directory import Directory

CONCURRENCY = 16


async def main(url: str, account_name: str, acked_path: str, first: int, last: int) -> None:
    store = await open_store(url)
    account = await Directory(store.engine).account_by_name(account_name)
    assert account is not None
    clock, ids = SystemClock(), RandomIds()
    fd = os.open(acked_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    numbers = iter(range(first, last))

    async def submitter() -> None:
        for n in numbers:
            submission = Submission(
                account=account,
                origin=Origin.CLI,
                submitter="crash-test",
                recipients=(Recipient(number=f"+1781617{n % 10000:04d}"),),
                content=Content(text=f"crash-{n}"),
                options=Options(report=ReportOn.FINAL),
            )
            accepted = await accept(submission, store=store.messages, clock=clock, ids=ids)
            os.write(fd, f"{accepted.message_id} crash-{n}\n".encode())
            os.fsync(fd)

    await asyncio.gather(*(submitter() for _ in range(CONCURRENCY)))
    os.close(fd)
    await store.close()


if __name__ == "__main__":
    url, account_name, acked, first, last = sys.argv[1:6]
    asyncio.run(main(url, account_name, acked, int(first), int(last)))
