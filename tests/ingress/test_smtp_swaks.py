"""The SMTP listener driven by swaks (an independent SMTP client), positive and negative."""
# ruff: noqa: F811 (pytest fixtures imported from smtp_harness are test parameters)

from __future__ import annotations

from pathlib import Path

from smtp_harness import DOMAIN, PASSWORD, MakeRig, SmtpRig, make_rig, rig  # noqa: F401


async def test_swaks_sends_an_sms(rig: SmtpRig) -> None:
    result = await rig.swaks(
        "--from", "bob@acme.test",
        f"--to=1-781-617-0000@SMS.{DOMAIN}",
        "--header", "Subject: Swaks test",
        "--body", "Sent by swaks",
        "--pipeline",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 queued as" in result.stdout
    assert "PIPELINING" in result.stdout
    message = await rig.only_message()
    assert (message.content.subject, message.content.text) == ("Swaks test", "Sent by swaks")
    [delivery] = await rig.store.messages.deliveries_of(message.id)
    assert delivery.recipient == "+17816170000"


async def test_swaks_relay_attempt_is_refused(rig: SmtpRig) -> None:
    result = await rig.swaks("--from", "bob@acme.test", "--to", "someone@example.com")
    assert result.returncode == 24  # swaks: the server refused every recipient
    assert "550 5.7.1 relay denied" in result.stdout
    assert rig.accepted == []


async def test_swaks_unknown_sender_is_refused(rig: SmtpRig) -> None:
    result = await rig.swaks("--from", "eve@unknown.test", f"--to=17816170000@{DOMAIN}")
    assert result.returncode == 24
    assert "550 5.7.1 sender <eve@unknown.test> is not provisioned" in result.stdout


async def test_swaks_starttls_and_auth_login(make_rig: MakeRig) -> None:
    rig, _ = await make_rig(networks=())
    refused = await rig.swaks(
        "--from", "bob@acme.test", f"--to=17816170000@{DOMAIN}",
        "--auth", "LOGIN", "--auth-user", "alice", "--auth-password", PASSWORD,
    )  # fmt: skip
    assert refused.returncode != 0  # AUTH is not offered without TLS
    assert rig.accepted == []
    wrong = await rig.swaks(
        "--tls", "--from", "bob@acme.test", f"--to=17816170000@{DOMAIN}",
        "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "nope",
    )  # fmt: skip
    assert wrong.returncode == 28 and "535 5.7.8" in wrong.stdout
    taken = await rig.swaks(
        "--tls", "--from", "bob@acme.test", f"--to=17816170000@{DOMAIN}",
        "--auth", "LOGIN", "--auth-user", "alice", "--auth-password", PASSWORD,
    )  # fmt: skip
    assert taken.returncode == 0, taken.stdout
    assert "235 2.7.0" in taken.stdout and "250 2.0.0 queued as" in taken.stdout
    assert len(rig.accepted) == 1


async def test_swaks_fax_with_a_pdf(rig: SmtpRig, tmp_path: Path) -> None:
    pdf = tmp_path / "contract.pdf"
    pdf.write_bytes(b"%PDF-1.7\n" + b"\x00\x01binary\xff" * 2000)
    result = await rig.swaks(
        "--from", "bob@acme.test", f"--to=17816170000@fax.{DOMAIN}",
        "--header", "Subject: Contract",
        "--body", "Please sign",
        "--attach-type", "application/pdf", "--attach-name", "contract.pdf",
        "--attach", f"@{pdf}",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
    message = await rig.only_message()
    [attachment] = message.content.attachments
    assert (attachment.filename, attachment.content_type) == ("contract.pdf", "application/pdf")
    assert await rig.blobs.get(attachment.blob_id) == pdf.read_bytes()
