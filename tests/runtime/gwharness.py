"""Running real `teleway` processes for end-to-end tests: free ports, a config file, the CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

TELEWAY = [sys.executable, "-m", "teleway.runtime"]


_handed_out: set[int] = set()


def free_port() -> int:
    """A free loopback port, never one this process handed out before: the probe socket is
    closed at once, so two calls in a row (a gateway's SMPP and simulator ports) could
    otherwise get the same port and one listener would find it taken."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


@dataclass
class GatewayFiles:
    root: Path
    config: Path
    http_port: int
    simulator_port: int
    database_url: str

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["TELEWAY_CONFIG"] = str(self.config)
        env.pop("TELEWAY_PASSWORD", None)
        return env

    def cli(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*TELEWAY, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            cwd=self.root,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"teleway {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def serve(self, log_path: Path | None = None) -> subprocess.Popen[bytes]:
        log = open(log_path or self.root / "serve.log", "ab")  # noqa: SIM115
        return subprocess.Popen(
            [*TELEWAY, "serve"], env=self.env(), stdout=log, stderr=log, cwd=self.root
        )

    def http_json(self, path: str) -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def http_text(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
            return str(r.read().decode())

    def wait_http(self, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"gateway exited early:\n{self.log()}")
            try:
                status, body = self.http_json("/healthz")
                if status == 200 and all(dict(body.get("upstreams") or {"x": True}).values()):  # type: ignore[call-overload]
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"gateway did not become healthy:\n{self.log()}")

    def log(self) -> str:
        path = self.root / "serve.log"
        return path.read_text(errors="replace") if path.exists() else ""


def make_gateway(
    root: Path,
    *,
    database_url: str | None = None,
    receipt_delay: float = 0.1,
    simulator: bool = True,
    extra: str = "",
    event_loop: str = "",
) -> GatewayFiles:
    http_port, sim_port = free_port(), free_port()
    url = database_url or f"sqlite+aiosqlite:///{root}/var/teleway.db"
    config = root / "teleway.toml"
    config.write_text(
        f"""
[gateway]
data_dir = "{root}/var"
domains = ["teleway.test"]
{f'event_loop = "{event_loop}"' if event_loop else ""}

[database]
url = "{url}"

[blobs]
directory = "{root}/var/blobs"

[listeners.smtp]
enabled = false

[listeners.smpp]
enabled = false

[listeners.smpp_tls]
enabled = false

[listeners.http]
port = {http_port}

[queue]
poll_interval = 0.2
retry_base_seconds = 0.5
retry_max_seconds = 2
lease_seconds = 5

[simulator]
enabled = {"true" if simulator else "false"}
port = {sim_port}
receipt_delay = {receipt_delay}
{extra}
"""
    )
    return GatewayFiles(
        root=root, config=config, http_port=http_port, simulator_port=sim_port, database_url=url
    )
