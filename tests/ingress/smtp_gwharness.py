"""A real `teleway serve` process with the SMTP listener on, for end-to-end SMTP tests."""

from __future__ import annotations

import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

from gwharness import GatewayFiles, free_port, make_gateway

PROVISIONING = """
[[accounts]]
name = "acme"
senders = ["*@acme.test"]
networks = ["127.0.0.0/8"]

[accounts.settings]
notify_on = "final"
"""


@dataclass
class SmtpGateway:
    files: GatewayFiles
    smtp_port: int

    def wait_smtp(self, process: object, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if getattr(process, "poll")() is not None:  # noqa: B009
                raise AssertionError(f"gateway exited early:\n{self.files.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=1) as s:
                    if s.recv(100).startswith(b"220"):
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"SMTP listener did not come up:\n{self.files.log()}")


def smtp_gateway(
    root: Path,
    *,
    relay_port: int = 9,
    receipt_delay: float = 0.1,
    extra: str = "",
    event_loop: str = "",
) -> SmtpGateway:
    """Config, migrated database and provisioning for a gateway whose SMTP listener is on."""
    smtp_port = free_port()
    files = make_gateway(root, receipt_delay=receipt_delay, extra=extra, event_loop=event_loop)
    text = files.config.read_text()
    text = text.replace(
        "[listeners.smtp]\nenabled = false\n",
        f"[listeners.smtp]\nport = {smtp_port}\n\n"
        f'[notifications]\nrelay_host = "127.0.0.1"\nrelay_port = {relay_port}\n'
        'from_address = "notify@teleway.test"\nretry_base_seconds = 0.5\n'
        "retry_max_seconds = 1\n",
    )
    files.config.write_text(text)
    files.cli("db", "upgrade")
    (root / "prov.toml").write_text(PROVISIONING)
    files.cli("admin", "apply", str(root / "prov.toml"))
    return SmtpGateway(files=files, smtp_port=smtp_port)
