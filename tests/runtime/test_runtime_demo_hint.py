"""`make run` tells a newcomer every way in, with the demo provisioning's credentials."""

from __future__ import annotations

import tomllib
from pathlib import Path

from teleway.runtime.config import load_config
from teleway.runtime.gateway import _demo_doors

DEMO = Path(__file__).parents[2] / "examples" / "demo-provisioning.toml"


def test_demo_hint_names_the_listeners_and_the_demo_credentials() -> None:
    config = load_config(None, env={})
    hint = _demo_doors(config)
    listeners = config.listeners
    assert f"http://{listeners.http.host}:{listeners.http.port}/" in hint
    assert f"--server {listeners.smtp.host}:{listeners.smtp.port}" in hint
    assert f"{listeners.smpp.host}:{listeners.smpp.port}" in hint
    # the credentials it prints are the ones the demo file provisions
    demo = tomllib.loads(DEMO.read_text())
    (account,) = demo["accounts"]
    user = account["users"][0]
    assert f"user {user['username']}, password {user['password']}" in hint
    smpp = account["smpp"][0]
    assert f"system_id {smpp['system_id']}, password {smpp['password']}" in hint
    assert "*@example.com" in account["senders"]  # the swaks line's sender is allowed
