"""The SMTP listener's rules, each positive and negative, through smtplib on a real socket."""
# ruff: noqa: F811 (pytest fixtures imported from smtp_harness are test parameters)

from __future__ import annotations

import asyncio
import base64
import logging
import smtplib
import socket
from typing import Any

import pytest
from smtp_harness import (  # noqa: F401 (fixtures)
    DOMAIN,
    PASSWORD,
    MakeRig,
    SmtpRig,
    client_tls,
    email,
    make_rig,
    rig,
)

from teleway.core.model import Device, ReportOn
from teleway.core.ports import StoreUnavailable
from teleway.ingress.smtp import MAX_DATA_LINE, SmtpListener


def transaction(
    client: smtplib.SMTP,
    recipients: list[str],
    data: bytes | str,
    *,
    sender: str = "bob@acme.test",
) -> tuple[list[tuple[int, bytes]], tuple[int, bytes] | None]:
    """MAIL, one RCPT each (their replies), DATA if any recipient was taken (its reply)."""
    code, text = client.mail(sender)
    assert code == 250, (code, text)
    replies = [client.rcpt(r) for r in recipients]
    if not any(code == 250 for code, _ in replies):
        client.rset()
        return replies, None
    return replies, client.data(data)


def text_of(message: Any) -> bytes:
    return bytes(message) if not isinstance(message, bytes) else message


async def test_each_recipient_gets_its_own_reply_and_the_good_ones_are_delivered(
    rig: SmtpRig,
) -> None:
    recipients = [
        f"+17816170000@{DOMAIN}",
        f"1-781-6170001@Fax.{DOMAIN}",
        f"1.781.617.0002@mobile.{DOMAIN}",
        f"12@{DOMAIN}",  # not a phone number
        f"+17816170003@pager.{DOMAIN}",  # no such device
        "+17816170004@example.com",  # someone else's domain
    ]

    def go(client: smtplib.SMTP) -> Any:
        client.ehlo("client.test")
        return transaction(client, recipients, email().as_bytes())

    replies, data = await rig.session(go)
    codes = [code for code, _ in replies]
    assert codes == [250, 250, 250, 550, 550, 550]
    assert replies[3][1].startswith(b"5.1.1")
    assert b"not a phone number" in replies[3][1]
    assert replies[4][1].startswith(b"5.1.1") and b"unknown device" in replies[4][1]
    assert replies[5][1].startswith(b"5.7.1") and b"relay denied" in replies[5][1]
    assert data is not None and data[0] == 250 and data[1].startswith(b"2.0.0 queued as ")
    message = await rig.only_message()
    assert data[1].endswith(message.id.encode())
    deliveries = await rig.store.messages.deliveries_of(message.id)
    assert [(d.recipient, d.device) for d in deliveries] == [
        ("+17816170000", Device.SMS),
        ("+17816170001", Device.FAX),
        ("+17816170002", Device.MOBILE),
    ]
    assert message.content.subject == "Hello"
    assert message.content.text == "Meeting at 10"
    assert message.submitter == "bob@acme.test"
    assert message.options.report is ReportOn.FAILURE  # the account's notify_on


async def test_relay_is_denied_whoever_asks(rig: SmtpRig) -> None:
    def go(client: smtplib.SMTP) -> Any:
        client.ehlo("client.test")
        return [
            transaction(client, [address], "x")[0][0]
            for address in ("a@example.com", f"+17816170000@{DOMAIN}.evil.test", "postmaster")
        ]

    for code, text in await rig.session(go):
        assert (code, text[:5]) == (550, b"5.7.1"), text
    assert rig.accepted == []


async def test_unknown_sender_null_sender_and_foreign_network_are_refused_at_rcpt(
    rig: SmtpRig,
) -> None:
    target = f"+17816170000@{DOMAIN}"

    def go(client: smtplib.SMTP) -> Any:
        client.ehlo("client.test")
        results = []
        for sender in ("eve@unknown.test", "", "carol@other.test"):
            client.mail(sender)
            results.append(client.rcpt(target))
            client.rset()
        return results

    unknown, null, foreign = await rig.session(go)
    assert unknown[0] == 550 and unknown[1].startswith(b"5.7.1")
    assert b"not provisioned" in unknown[1]
    assert null[0] == 550 and b"without a sender" in null[1]
    assert foreign[0] == 550 and b"127.0.0.1 are not allowed" in foreign[1]
    assert rig.accepted == []


async def test_from_header_must_belong_to_the_senders_account(rig: SmtpRig) -> None:
    def go(client: smtplib.SMTP) -> Any:
        client.ehlo("client.test")
        spoofed = email(sender="mallory@other.test").as_bytes()
        refused = transaction(client, [f"+17816170000@{DOMAIN}"], spoofed)[1]
        partner = email(sender="Ops <ops@partner.test>").as_bytes()
        taken = transaction(client, [f"+17816170000@{DOMAIN}"], partner)[1]
        return refused, taken

    refused, taken = await rig.session(go)
    assert refused is not None and refused[0] == 550 and refused[1].startswith(b"5.7.1")
    assert b"mallory@other.test" in refused[1]
    assert taken is not None and taken[0] == 250
    message = await rig.only_message()
    assert message.submitter == "ops@partner.test"  # the From address is notified


async def test_auth_only_after_starttls_and_replaces_the_network_check(
    make_rig: MakeRig,
) -> None:
    rig, _ = await make_rig(networks=())  # no allowed network: only AUTH lets mail in
    target = f"+17816170000@{DOMAIN}"

    def go(client: smtplib.SMTP) -> Any:
        client.ehlo("client.test")
        plain_ehlo = client.esmtp_features.copy()
        cleartext_auth = client.docmd("AUTH", "PLAIN " + _plain("alice", PASSWORD))
        before = transaction(client, [target], "x")[0][0]
        client.starttls(context=client_tls())
        client.ehlo("client.test")
        tls_ehlo = client.esmtp_features.copy()
        client.login("alice", PASSWORD)
        replies, data = transaction(client, [target], email().as_bytes())
        return plain_ehlo, cleartext_auth, before, tls_ehlo, replies, data

    plain_ehlo, cleartext_auth, before, tls_ehlo, replies, data = await rig.session(go)
    assert "auth" not in plain_ehlo and "starttls" in plain_ehlo
    assert cleartext_auth[0] == 538 and cleartext_auth[1].startswith(b"5.7.11")
    assert before[0] == 550 and b"not allowed" in before[1]
    assert tls_ehlo["auth"].split() == ["LOGIN", "PLAIN"]  # nothing else is a mechanism
    assert replies[0][0] == 250
    assert data is not None and data[0] == 250
    assert len(rig.accepted) == 1


async def test_auth_login_wrong_password_and_lockout(rig: SmtpRig) -> None:
    limit = rig.policy.limits.auth_fail_limit

    def go(client: smtplib.SMTP) -> Any:
        client.ehlo("client.test")
        client.starttls(context=client_tls())
        client.ehlo("client.test")
        answers = []

        def login(password: str) -> None:
            client.user, client.password = "alice", password
            try:  # AUTH LOGIN, one attempt (smtplib.login would try every mechanism)
                answers.append(client.auth("LOGIN", client.auth_login, initial_response_ok=False))
            except smtplib.SMTPAuthenticationError as exc:
                answers.append((exc.smtp_code, exc.smtp_error))

        for _ in range(limit + 1):
            login("wrong password")
        login(PASSWORD)  # even the right password is refused while the address is locked out
        return answers

    answers = await rig.session(go)
    assert all(code == 535 for code, _ in answers[:limit])
    assert answers[0][1].startswith(b"5.7.8")
    assert answers[limit][0] == 454 and answers[limit][1].startswith(b"4.7.0")
    assert answers[-1][0] == 454


async def test_a_user_of_another_account_cannot_send_as_this_one(rig: SmtpRig) -> None:
    await rig.directory.add_user("olga", actor="test", account="other", password=PASSWORD)

    def go(client: smtplib.SMTP) -> Any:
        client.ehlo("client.test")
        client.starttls(context=client_tls())
        client.ehlo("client.test")
        client.login("olga", PASSWORD)
        return transaction(client, [f"+17816170000@{DOMAIN}"], "x")[0][0]

    code, text = await rig.session(go)
    assert code == 550 and b"does not belong to the account of user olga" in text


async def test_account_that_requires_tls(make_rig: MakeRig) -> None:
    rig, _ = await make_rig(settings={"require_tls": True})
    target = f"+17816170000@{DOMAIN}"

    def go(client: smtplib.SMTP) -> Any:
        client.ehlo("client.test")
        clear = transaction(client, [target], "x")[0][0]
        client.starttls(context=client_tls())
        client.ehlo("client.test")
        return clear, transaction(client, [target], email().as_bytes())

    clear, (replies, data) = await rig.session(go)
    assert clear[0] == 530 and clear[1].startswith(b"5.7.0")
    assert replies[0][0] == 250 and data is not None and data[0] == 250


async def test_size_is_announced_and_enforced(make_rig: MakeRig) -> None:
    rig, _ = await make_rig(limits={"max_message_size": 4000})
    target = f"+17816170000@{DOMAIN}"

    def go(client: smtplib.SMTP) -> Any:
        client.ehlo("client.test")
        size = client.esmtp_features.get("size")
        announced = client.mail("bob@acme.test", ["SIZE=5000"])
        client.rset()
        big = email(body=("x" * 70 + "\n") * 70).as_bytes()
        return size, announced, transaction(client, [target], big)[1]

    size, announced, data = await rig.session(go)
    assert size == "4000"
    assert announced[0] == 552
    assert data is not None and data[0] == 552 and data[1].startswith(b"5.3.4")
    assert rig.accepted == []


async def test_a_line_over_the_limit_is_refused_and_the_session_goes_on(make_rig: MakeRig) -> None:
    """500 5.5.2 for a line longer than MAX_DATA_LINE (also when the message is too big as
    well: the line decides, whatever the chunks it came in); the next message goes through."""
    rig, _ = await make_rig(limits={"max_message_size": 200_000})
    target = f"+17816170000@fax.{DOMAIN}"  # a fax takes a long text (an SMS would be too long)
    long_line = b"y" * (MAX_DATA_LINE + 1)
    at_limit = b"z" * MAX_DATA_LINE

    def message(*lines: bytes) -> bytes:
        return email().as_bytes() + b"".join(line + b"\r\n" for line in lines)

    def go(client: smtplib.SMTP) -> Any:
        client.ehlo("client.test")
        return [
            transaction(client, [target], message(b"a", long_line, b"b"))[1],
            transaction(client, [target], message(at_limit, long_line, at_limit, at_limit))[1],
            # a header line of exactly MAX_DATA_LINE bytes (the text itself has a limit)
            transaction(client, [target], b"X-Pad: " + at_limit[7:] + b"\r\n" + message())[1],
        ]

    over, over_and_big, fine = await rig.session(go)
    assert over is not None and over[0] == 500 and over[1].startswith(b"5.5.2")
    assert over_and_big is not None and over_and_big[0] == 500, over_and_big
    assert fine is not None and fine[0] == 250, fine
    assert len(rig.accepted) == 1


async def test_each_connection_has_its_own_command_line_limits(rig: SmtpRig) -> None:
    """MAIL's line limit is 512 plus the SIZE/SMTPUTF8 allowances the EHLO announced. aiosmtpd
    keeps it in a dict shared by every connection (each new one resets it for all) and raises
    it again at every EHLO: A's MAIL was refused after B connected, and after 100 EHLOs a
    MAIL over every allowance went through."""

    def run() -> tuple[int, int, int]:
        first = smtplib.SMTP("127.0.0.1", rig.port, timeout=10)
        first.ehlo("a.test")
        second = smtplib.SMTP("127.0.0.1", rig.port, timeout=10)  # after A's EHLO
        try:
            padding = "x" * (530 - len("MAIL FROM:<@acme.test> SIZE=100"))
            mail = f"MAIL FROM:<{padding}@acme.test> SIZE=100"
            assert 512 < len(mail) <= 512 + 26
            within = first.docmd(mail)[0]
            for _ in range(100):
                second.ehlo("b.test")
            over = "MAIL FROM:<" + "z" * (560 - len("MAIL FROM:<@acme.test>")) + "@acme.test>"
            assert len(over) > 512 + 26 + 10  # over any allowance
            too_long = second.docmd(over)[0]
            first.docmd("RSET")
            first.ehlo("a.test")
            also_too_long = first.docmd(over)[0]
            return within, too_long, also_too_long
        finally:
            first.close()
            second.close()

    within, too_long, also_too_long = await asyncio.to_thread(run)
    assert (within, too_long, also_too_long) == (250, 500, 500)


async def test_a_broken_tls_handshake_is_one_warning_and_the_listener_goes_on(
    rig: SmtpRig, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_handshake() -> bytes:
        with socket.create_connection(("127.0.0.1", rig.port), timeout=10) as s:
            f = s.makefile("rb")
            f.readline()
            s.sendall(b"EHLO client.test\r\n")
            while f.readline()[3:4] != b" ":
                pass
            s.sendall(b"STARTTLS\r\n")
            assert f.readline().startswith(b"220")
            s.sendall(b"\x16\x03\x01\x00\x05hello")  # not a ClientHello
            return f.read()  # the gateway closes the connection

    with caplog.at_level(logging.WARNING):
        assert await asyncio.to_thread(broken_handshake) == b""
        await asyncio.sleep(0.1)
    warnings = [
        r for r in caplog.records if r.getMessage() == "TLS handshake after STARTTLS failed"
    ]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert await rig.session(lambda c: c.ehlo("again.test")[0]) == 250


async def test_an_internal_error_is_a_temporary_reply_without_internals(
    rig: SmtpRig, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any) -> str:
        raise RuntimeError("secret detail of the gateway")

    monkeypatch.setattr(rig.policy, "handle_RCPT", broken)

    def go(client: smtplib.SMTP) -> tuple[int, bytes]:
        client.ehlo("client.test")
        client.mail("bob@acme.test")
        return client.rcpt(f"+17816170000@{DOMAIN}")

    with caplog.at_level(logging.ERROR):
        code, text = await rig.session(go)
    assert (code, text) == (451, b"4.3.0 internal error, try again later")
    failed = [r for r in caplog.records if r.getMessage() == "SMTP command failed"]
    assert failed and failed[0].exc_info is not None  # the traceback is in the log


async def test_too_many_recipients(make_rig: MakeRig) -> None:
    rig, _ = await make_rig(limits={"max_recipients": 2})
    recipients = [f"+1781617000{i}@{DOMAIN}" for i in range(3)]

    def go(client: smtplib.SMTP) -> Any:
        client.ehlo("client.test")
        return transaction(client, recipients, email().as_bytes())

    replies, data = await rig.session(go)
    assert [code for code, _ in replies] == [250, 250, 452]
    assert replies[2][1].startswith(b"4.5.3")
    assert data is not None and data[0] == 250
    deliveries = await rig.store.messages.deliveries_of((await rig.only_message()).id)
    assert len(deliveries) == 2


async def test_message_rate_per_ip_and_per_account(make_rig: MakeRig) -> None:
    rig, _ = await make_rig(
        limits={"messages_per_minute_per_ip": 3, "messages_per_minute_per_account": 2}
    )
    target = f"+17816170000@{DOMAIN}"

    def go(client: smtplib.SMTP) -> Any:
        client.ehlo("client.test")
        results = []
        for _ in range(3):
            code, text = client.mail("bob@acme.test")
            results.append(("MAIL", code, text))
            if code == 250:
                results.append(("RCPT", *client.rcpt(target)))
            client.rset()
        results.append(("MAIL", *client.mail("bob@acme.test")))
        return results

    results = await rig.session(go)
    rcpts = [(code, text[:5]) for kind, code, text in results if kind == "RCPT"]
    assert rcpts == [(250, b"2.1.5"), (250, b"2.1.5"), (452, b"4.7.0")]
    assert results[-1][1] == 452 and results[-1][2].startswith(b"4.7.0")


async def test_connections_per_ip(make_rig: MakeRig) -> None:
    rig, _ = await make_rig(limits={"max_connections_per_ip": 1})

    def go(first: smtplib.SMTP) -> Any:
        first.ehlo("client.test")
        second = smtplib.SMTP(timeout=10)
        try:
            return second.connect("127.0.0.1", rig.port)
        finally:
            second.close()

    code, text = await rig.session(go)
    assert code == 421 and text.startswith(b"4.7.0")

    def again(client: smtplib.SMTP) -> Any:  # the first connection closed: room again
        return client.ehlo("client.test")[0]

    assert await rig.session(again) == 250


async def test_store_failure_answers_451_and_the_retry_succeeds(
    make_rig: MakeRig,
) -> None:
    rig, acceptor = await make_rig()
    acceptor.failure = StoreUnavailable("database is locked")
    target = f"+17816170000@{DOMAIN}"

    def go(client: smtplib.SMTP) -> Any:
        client.ehlo("client.test")
        return transaction(client, [target], email().as_bytes())[1]

    first = await rig.session(go)
    assert first == (451, b"4.3.0 the message could not be stored now, try again later")
    assert rig.accepted == []
    acceptor.failure = None
    second = await rig.session(go)
    assert second is not None and second[0] == 250
    assert len(rig.accepted) == 1


async def test_long_text_over_the_account_limit_is_refused_not_truncated(
    make_rig: MakeRig,
) -> None:
    rig, _ = await make_rig(settings={"max_sms_parts": 2})
    reject_rig, _ = await make_rig(settings={"long_sms_policy": "reject"})
    target = f"+17816170000@{DOMAIN}"

    def send(body: str) -> Any:
        def go(client: smtplib.SMTP) -> Any:
            client.ehlo("client.test")
            return transaction(client, [target], email(subject="", body=body).as_bytes())[1]

        return go

    two_parts = await rig.session(send("word " * 60))  # 299 GSM characters: 2 parts
    three_parts = await rig.session(send("word " * 70))  # 349: 3 parts
    assert two_parts is not None and two_parts[0] == 250
    assert three_parts is not None and three_parts[0] == 550
    assert three_parts[1].startswith(b"5.3.4") and b"allows 2" in three_parts[1]
    one = await reject_rig.session(send("short"))
    long = await reject_rig.session(send("x" * 161))
    assert one is not None and one[0] == 250
    assert long is not None and long[:1] == (550,) and long[1].startswith(b"5.3.4")
    # a fax recipient takes any length
    fax = await reject_rig.session(
        lambda c: (
            c.ehlo("x"),
            transaction(c, [f"+17816170000@fax.{DOMAIN}"], email(body="x" * 500).as_bytes()),
        )[1][1]
    )
    assert fax is not None and fax[0] == 250


async def test_empty_subject_and_empty_body(rig: SmtpRig) -> None:
    target = f"+17816170000@{DOMAIN}"

    def go(client: smtplib.SMTP) -> Any:
        client.ehlo("client.test")
        transaction(client, [target], email(subject="", body="Body only\n").as_bytes())
        transaction(client, [target], email(subject="Subject only", body="\n\n").as_bytes())
        return transaction(client, [target], email(subject="", body=" \n").as_bytes())[1]

    empty = await rig.session(go)
    assert empty is not None and empty[0] == 550 and empty[1].startswith(b"5.6.0")
    body_only, subject_only = await rig.messages()
    assert (body_only.content.subject, body_only.content.text) == ("", "Body only")
    # the SMS text is "Subject only", never "Subject only," with a dangling separator
    assert (subject_only.content.subject, subject_only.content.text) == ("", "Subject only")


async def test_non_latin_text_end_to_end(rig: SmtpRig) -> None:
    subject = "שלום · مرحبا · Привет"
    body = "会議は10時です 🎉 — ok"

    def go(client: smtplib.SMTP) -> Any:
        client.ehlo("client.test")
        return transaction(
            client, [f"+17816170000@{DOMAIN}"], email(subject=subject, body=body).as_bytes()
        )[1]

    data = await rig.session(go)
    assert data is not None and data[0] == 250
    message = await rig.only_message()
    assert (message.content.subject, message.content.text) == (subject, body)


async def test_attachments_are_stored_per_device(rig: SmtpRig) -> None:
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 40
    audio = b"RIFF....WAVEfmt " + b"\x01" * 3000
    image = b"\x89PNG\r\n\x1a\n" + b"\x02" * 500

    def build() -> bytes:
        message = email(body="See attached")
        message.add_attachment(pdf, maintype="application", subtype="pdf", filename="q3.pdf")
        message.add_attachment(audio, maintype="audio", subtype="wav", filename="hello.wav")
        message.add_attachment(image, maintype="image", subtype="png", filename="logo.png")
        return message.as_bytes()

    def go(client: smtplib.SMTP) -> Any:
        client.ehlo("client.test")
        sms_only = transaction(client, [f"+17816170000@{DOMAIN}"], build())[1]
        with_fax = transaction(
            client, [f"+17816170000@{DOMAIN}", f"+17816170001@fax.{DOMAIN}"], build()
        )[1]
        return sms_only, with_fax

    sms_only, with_fax = await rig.session(go)
    assert sms_only is not None and with_fax is not None
    assert sms_only[0] == 250 and with_fax[0] == 250
    first, second = await rig.messages()
    # SMS: the audio file is kept with the message (the SMS carries the text); the rest is
    # listed as not kept, never silently lost
    assert [(a.filename, a.content_type) for a in first.content.attachments] == [
        ("hello.wav", "audio/wav")
    ]
    assert first.options.extra["ignored_attachments"] == ["q3.pdf", "logo.png"]
    assert first.content.text == "See attached"
    names = {a.filename: a for a in second.content.attachments}
    assert set(names) == {"q3.pdf", "hello.wav", "logo.png"}
    assert await rig.blobs.get(names["q3.pdf"].blob_id) == pdf
    assert names["q3.pdf"].size == len(pdf)


async def test_auto_submitted_mail_asks_for_no_notification(rig: SmtpRig) -> None:
    message = email()
    message["Auto-Submitted"] = "auto-generated"

    def go(client: smtplib.SMTP) -> Any:
        client.ehlo("client.test")
        return transaction(client, [f"+17816170000@{DOMAIN}"], message.as_bytes())[1]

    data = await rig.session(go)
    assert data is not None and data[0] == 250
    stored = await rig.only_message()
    assert stored.options.report is ReportOn.NONE
    assert stored.options.extra["auto_submitted"] == "auto-generated"


async def test_replies_are_counted_in_metrics(rig: SmtpRig) -> None:
    def go(client: smtplib.SMTP) -> Any:
        client.ehlo("client.test")
        transaction(client, ["x@example.com"], "x")
        return transaction(client, [f"+17816170000@{DOMAIN}"], email().as_bytes())[1]

    await rig.session(go)
    text = rig.metrics.render().decode()
    assert 'teleway_smtp_replies_total{code="550",command="RCPT"} 1.0' in text
    assert 'teleway_smtp_replies_total{code="250",command="DATA"} 1.0' in text


def _plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


async def test_auth_switched_off_is_not_announced(rig: SmtpRig) -> None:
    listener = SmtpListener(
        rig.policy, host="127.0.0.1", port=0, tls_context=rig.listener.tls_context, auth=False
    )
    await listener.start()

    def go() -> Any:
        with smtplib.SMTP("127.0.0.1", listener.port, timeout=30) as client:
            client.ehlo("client.test")
            client.starttls(context=client_tls())
            client.ehlo("client.test")
            return client.esmtp_features, client.docmd("AUTH", "PLAIN " + _plain("alice", PASSWORD))

    try:
        features, answer = await asyncio.to_thread(go)
    finally:
        await listener.stop()
    assert "auth" not in features
    assert answer[0] == 504
