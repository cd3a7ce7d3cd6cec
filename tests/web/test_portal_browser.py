"""The portal in a real browser (Debian's chromium, headless, driven by Playwright) against a
real gateway process (`teleway serve` with the SMSC simulator as its upstream).

Screenshots of the main pages go to $TELEWAY_SCREENSHOTS (default /tmp/teleway-portal).
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

from gwharness import GatewayFiles, make_gateway

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "Portal-pass-1234"
SHOTS = Path(os.environ.get("TELEWAY_SCREENSHOTS", "/tmp/teleway-portal"))
PROVISIONING = f"""
[[operators]]
username = "olga"
password = "{PASSWORD}"

[[accounts]]
name = "acme"
senders = ["*@acme.example"]
networks = ["127.0.0.0/8"]

[accounts.settings]
sender_id = "ACME"

[[accounts.users]]
username = "alice"
password = "{PASSWORD}"

[[accounts]]
name = "globex"
networks = ["127.0.0.0/8"]

[[accounts.users]]
username = "gina"
password = "{PASSWORD}"
"""
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayFiles]:
    root = tmp_path_factory.mktemp("portal-gw")
    gw = make_gateway(root, receipt_delay=1.5)
    gw.cli("db", "upgrade")
    (root / "prov.toml").write_text(PROVISIONING)
    gw.cli("admin", "apply", str(root / "prov.toml"))
    server = gw.serve()
    try:
        gw.wait_http(server)
        yield gw
    finally:
        server.terminate()
        try:
            server.wait(timeout=40)
        except Exception:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.fail(
            f"{CHROMIUM} is missing: the portal's browser tests need Debian's chromium; "
            "`make test` installs it (scripts/ensure-system.sh lists chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _login(browser: Any, gw: GatewayFiles, username: str) -> Any:
    context = browser.new_context(
        base_url=f"http://127.0.0.1:{gw.http_port}",
        viewport={"width": 1360, "height": 900},
        accept_downloads=True,
    )
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.goto("/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/$"))
    return page


def test_login_page_and_wrong_password(gateway: GatewayFiles, browser: Any) -> None:
    context = browser.new_context(base_url=f"http://127.0.0.1:{gateway.http_port}")
    page = context.new_page()
    page.goto("/messages")
    assert "/login" in page.url
    _shot(page, "01-login")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    assert "Wrong username or password" in page.inner_text(".form-error")
    context.close()


def test_account_user_journey(gateway: GatewayFiles, browser: Any) -> None:
    page = _login(browser, gateway, "alice")
    _shot(page, "02-dashboard")

    # Settings: the preview follows the template as it is typed, then the template is saved
    page.goto("/settings")
    page.fill("#sample_subject", "Boiler")
    page.fill("#sample_body", "Pressure low")
    page.fill("#sms_template", "[{subject}] {body} ✓")
    expect(page.locator("#preview-text")).to_have_text("[Boiler] Pressure low ✓")
    assert page.inner_text("#preview-encoding").startswith("UCS-2")  # the tick is not GSM
    page.fill("#sms_template", "{subject}: {body}")
    expect(page.locator("#preview-text")).to_have_text("Boiler: Pressure low")
    assert page.inner_text("#preview-encoding") == "GSM 7-bit"
    _shot(page, "03-settings")
    page.click("#save-preferences")
    page.wait_for_selector(".notice")
    assert "Preferences saved" in page.inner_text(".notice")
    assert page.input_value("#sms_template") == "{subject}: {body}"

    # API key: created, shown once
    page.fill("#api-keys input[name=name]", "billing")
    page.click("#api-keys button[type=submit]")
    key = page.inner_text("#new-key")
    assert key.startswith("tw_")
    page.goto("/settings")
    assert key not in page.content()

    # a test message, watched live until the simulator's receipt makes it DELIVERED
    page.goto("/send")
    page.fill("input[name=number]", "+14155550123")
    page.fill("input[name=subject]", "Boiler")
    page.fill("textarea[name=text]", "Pressure low")
    page.click("#send-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/messages/[^/?]+\?notice=.*"))
    message_id = page.url.split("?")[0].rsplit("/", 1)[1]
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    page.wait_for_selector(".delivery .delivery-head [data-state=delivered]", timeout=30_000)
    assert navigations == []  # updated live over server-sent events, not by a reload
    expect(page.locator("#live")).to_contain_text("final")
    timeline = page.inner_text("#timeline")
    assert "DELIVRD" in timeline
    assert "simulator:" in timeline  # upstream ids and parts
    _shot(page, "04-message")

    # history and CSV export
    page.goto("/messages")
    assert message_id in page.content()
    _shot(page, "05-messages")
    with page.expect_download() as download_info:
        page.click("#csv-export")
    path = download_info.value.path()
    rows = list(csv.reader(io.StringIO(Path(path).read_text(encoding="utf-8"))))
    assert rows[0][:2] == ["message_id", "created_at"]
    mine = [r for r in rows[1:] if r[0] == message_id]
    assert mine and mine[0][7] == "delivered" and mine[0][14] == "Pressure low"

    # another account's message by URL: not found
    other = gateway.cli("send", "--account", "globex", "--to", "+14155550999", "globex only")
    other_id = other.stdout.split()[2]
    response = page.goto(f"/messages/{other_id}")
    assert response is not None and response.status == 404
    assert "globex only" not in page.content()
    response = page.goto("/admin/accounts")
    assert response is not None and response.status == 403

    # a forged form (wrong CSRF token) changes nothing
    page.goto("/settings")
    page.fill("#sms_template", "{body} forged")
    page.evaluate("document.querySelector('#preferences input[name=csrf]').value = 'forged'")
    page.click("#save-preferences")
    assert "This form has expired" in page.inner_text("h1")
    page.goto("/settings")
    assert page.input_value("#sms_template") == "{subject}: {body}"

    # log out: the dashboard asks for a login again
    page.click(".whoami button")
    page.wait_for_url(re.compile(r".*/login.*"))
    page.goto("/")
    assert "/login" in page.url
    page.context.close()


def test_operator_adds_a_sender_and_sees_it_audited(gateway: GatewayFiles, browser: Any) -> None:
    page = _login(browser, gateway, "olga")
    page.goto("/admin/accounts")
    _shot(page, "06-accounts")
    page.click("text=acme")
    page.fill("#senders input[name=pattern]", "ops@acme.example")
    page.click("#senders button[type=submit]")
    page.wait_for_selector(".notice")
    assert "ops@acme.example" in page.inner_text("#senders")
    # a duplicate and a bad network get clear messages, no stack trace
    page.fill("#senders input[name=pattern]", "ops@acme.example")
    page.click("#senders button[type=submit]")
    assert "already" in page.inner_text("#senders .field-error")
    page.fill("#networks input[name=cidr]", "10.0.0.0/33")
    page.click("#networks button[type=submit]")
    assert "10.0.0.0/33" in page.inner_text("#networks .field-error")
    assert "Traceback" not in page.content()
    _shot(page, "07-account")
    page.goto("/admin/audit")
    audit = page.inner_text("#audit")
    assert "sender.add" in audit and "portal:olga" in audit and "sender:ops@acme.example" in audit
    _shot(page, "08-audit")
    page.goto("/admin/status")
    assert "bound" in page.inner_text("main")
    _shot(page, "09-status")
    page.goto("/")
    _shot(page, "10-operator-dashboard")
    page.context.close()
