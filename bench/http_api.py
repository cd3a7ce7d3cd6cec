"""REST API benchmark: what HTTP, authentication, validation and idempotency cost on top of
`accept()`.

Run: ``.venv/bin/python bench/http_api.py`` (``--quick`` for a smoke run that does not touch
docs/benchmarks.md).

A server process runs the listener's real application (`web.app.build_app` with a SQLite
store, uvicorn) and, beside it in the same process, a bare Starlette app answering a fixed JSON
document (the floor: uvicorn + Starlette + JSON, nothing of ours). The client process (httpx,
CONCURRENCY requests in flight over keep-alive connections) measures, for DURATION seconds each,
interleaved ROUNDS times, best round kept:

* ``POST /api/v1/messages`` (one recipient, 201 after commit) against the reference:
  ``accept()`` called directly in the server process by as many concurrent tasks (no HTTP);
* the same POST with an ``Idempotency-Key`` (one more write per request);
* ``GET /api/v1/messages/{id}`` (auth + history detail) against the bare Starlette app.

The table is printed and written as the ``## REST API`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import re
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
CONCURRENCY = 16
MESSAGE = {"recipients": [{"number": "+14155550100"}], "text": "benchmark"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(directory: str, port: int, bare_port: int, ready: Any, commands: Any) -> None:
    """The server process: the real app on `port`, the bare app on `bare_port`, and a
    command pipe to run the in-process reference (`accept()` directly)."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from teleway.core.accept import accept
    from teleway.core.model import Content, Origin, Recipient, Submission
    from teleway.runtime.wiring import RandomIds, SystemClock
    from teleway.store import open_store
    from teleway.store.api_keys import ApiKeys
    from teleway.store.blobs import LocalBlobStore
    from teleway.store.directory import Directory
    from teleway.store.history import History
    from teleway.store.idempotency import IdempotencyKeys
    from teleway.store.webhooks import WebhookAttempts
    from teleway.web.app import build_app
    from teleway.web.context import ApiSettings, WebContext

    async def main() -> None:
        store = await open_store(f"sqlite+aiosqlite:///{directory}/bench.db", migrate=True)
        clock, ids = SystemClock(), RandomIds()
        directory_ = Directory(store.engine)
        account = await directory_.create_account("bench", actor="bench")
        keys = ApiKeys(store.db, store.writer)
        _, secret = await keys.create(account.id, "bench", now=clock.now(), actor="bench")

        async def accept_one(submission: Submission) -> Any:
            return await accept(submission, store=store.messages, clock=clock, ids=ids)

        ctx = WebContext(
            messages=store.messages,
            queue=store.queue,
            directory=directory_,
            accept=accept_one,
            blobs=LocalBlobStore(Path(directory) / "blobs"),
            clock=clock,
            ids=ids,
            history=History(store.db),
            api_keys=keys,
            idempotency=IdempotencyKeys(store.db, store.writer),
            webhooks=WebhookAttempts(store.db, store.writer),
            api=ApiSettings(rate_limit=1e9, rate_burst=1_000_000_000),
        )

        async def fixed(request: Any) -> JSONResponse:
            return JSONResponse({"id": "x" * 26, "state": "delivered", "events": [1, 2, 3]})

        bare = Starlette(routes=[Route("/fixed", fixed)])
        servers = [
            uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=p, log_level="error", lifespan="off")
            )
            for app, p in ((build_app(ctx), port), (bare, bare_port))
        ]
        tasks = [asyncio.create_task(s.serve()) for s in servers]
        while not all(s.started for s in servers):
            await asyncio.sleep(0.05)
        ready.send(secret)
        loop = asyncio.get_running_loop()
        submission = Submission(
            account=account,
            origin=Origin.HTTP,
            submitter="bench",
            recipients=(Recipient(number="+14155550100"),),
            content=Content(text="benchmark"),
        )
        while True:
            command = await loop.run_in_executor(None, commands.recv)
            if command is None:
                break
            duration = float(command)
            count = 0
            deadline = time.perf_counter() + duration

            async def worker(until: float) -> None:
                nonlocal count
                while time.perf_counter() < until:
                    await accept_one(submission)
                    count += 1

            started = time.perf_counter()
            await asyncio.gather(*(worker(deadline) for _ in range(CONCURRENCY)))
            commands.send(count / (time.perf_counter() - started))
        for s in servers:
            s.should_exit = True
        await asyncio.gather(*tasks)
        await store.close()

    asyncio.run(main())


async def _http_rate(
    base: str, key: str, duration: float, method: str, path: str, idempotent: bool = False
) -> float:
    import httpx

    count = 0
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=30
    ) as client:
        deadline = time.perf_counter() + duration

        async def worker(n: int) -> None:
            nonlocal count
            i = 0
            while time.perf_counter() < deadline:
                headers = {"Idempotency-Key": f"w{n}-{i}-{time.time_ns()}"} if idempotent else {}
                if method == "POST":
                    response = await client.post(path, json=MESSAGE, headers=headers)
                else:
                    response = await client.get(path)
                if response.status_code >= 300:
                    raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
                count += 1
                i += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(CONCURRENCY)))
        return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run, no doc update")
    args = parser.parse_args()
    duration, rounds = (1.0, 1) if args.quick else (4.0, 3)
    port, bare_port = _free_port(), _free_port()
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as directory:
        ready_parent, ready_child = context.Pipe()
        commands_parent, commands_child = context.Pipe()
        server = context.Process(
            target=_serve, args=(directory, port, bare_port, ready_child, commands_child)
        )
        server.start()
        try:
            if not ready_parent.poll(60):
                raise SystemExit("the server did not start")
            key = ready_parent.recv()
            api = f"http://127.0.0.1:{port}/api/v1"
            bare = f"http://127.0.0.1:{bare_port}"
            created = asyncio.run(_one_message(api, key))
            best: dict[str, float] = {}

            def keep(name: str, value: float) -> None:
                best[name] = max(best.get(name, 0.0), value)

            for _ in range(rounds):
                commands_parent.send(duration)
                keep("accept", commands_parent.recv())
                keep("post", asyncio.run(_http_rate(api, key, duration, "POST", "/messages")))
                keep(
                    "post_idem",
                    asyncio.run(_http_rate(api, key, duration, "POST", "/messages", True)),
                )
                keep("get", asyncio.run(_http_rate(api, key, duration, "GET", created)))
                keep("bare", asyncio.run(_http_rate(bare, key, duration, "GET", "/fixed")))
            commands_parent.send(None)
        finally:
            server.join(30)
            if server.is_alive():
                server.kill()
    bare_rate, accept_rate = best["bare"], best["accept"]
    rows = [
        ("bare Starlette JSON endpoint (HTTP reference)", bare_rate, None, None),
        ("`accept()` called directly (store reference)", accept_rate, None, None),
        ("`POST /api/v1/messages` (201 after commit)", best["post"], bare_rate, accept_rate),
        ("... with `Idempotency-Key`", best["post_idem"], bare_rate, accept_rate),
        ("`GET /api/v1/messages/{id}`", best["get"], bare_rate, None),
    ]
    table = [
        "| operation | per second | ratio to bare HTTP | ratio to `accept()` |",
        "|---|---:|---:|---:|",
    ]
    for name, rate, http_ref, store_ref in rows:
        a = "" if http_ref is None else f"{rate / http_ref:.2f}"
        b = "" if store_ref is None else f"{rate / store_ref:.2f}"
        table.append(f"| {name} | {rate:,.0f} | {a} | {b} |")
    load = os.getloadavg()[0]
    text = "\n".join(table) + (
        f"\n\nLoad average during the run: {load:.1f}. When the HTTP rows are all close to the bare "
        "endpoint, the client (httpx, one process) is the bound, not the gateway."
    )
    print(text)
    if args.quick:
        return
    section = (
        "## REST API\n\n"
        f"`bench/http_api.py`: {CONCURRENCY} requests in flight from httpx in another process, "
        f"SQLite store, best of {rounds} rounds of {duration:.0f} s; Python "
        f"{platform.python_version()}, {os.cpu_count()} cores.\n\n{text}\n"
    )
    current = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    pattern = re.compile(r"## REST API\n.*?(?=\n## |\Z)", re.S)
    updated = (
        pattern.sub(section.rstrip("\n"), current)
        if pattern.search(current)
        else (current.rstrip("\n") + "\n\n" + section)
    )
    DOC.write_text(updated if updated.endswith("\n") else updated + "\n")
    print(f"written to {DOC.relative_to(ROOT)}", file=sys.stderr)


async def _one_message(api: str, key: str) -> str:
    import httpx

    async with httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {key}"}) as c:
        response = await c.post("/messages", json=MESSAGE)
        response.raise_for_status()
        return f"/messages/{response.json()['id']}"


if __name__ == "__main__":
    main()
