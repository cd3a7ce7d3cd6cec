"""A corpus of real-world-shaped e-mails, written out byte for byte: each gives the expected SMS
body or a clear refusal, never a crash. Plus a fuzz test of the parser."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teleway.core.model import Device
from teleway.render.email import (
    UnreadableEmail,
    attachments_for,
    decode_text,
    device_accepts,
    parse_email,
    sms_body,
)
from teleway.render.text import html_to_text, strip_quotes, strip_signature


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


OUTLOOK_HTML_ONLY = crlf(
    """From: "Bob Smith" <bob@acme.test>
To: "+17816170000@sms.teleway.test" <+17816170000@sms.teleway.test>
Subject: Server down
Date: Mon, 2 Nov 2026 09:12:44 +0000
Message-ID: <DB9PR01MB1234@DB9PR01MB1234.eurprd01.prod.exchangelabs.com>
Content-Type: text/html; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable
MIME-Version: 1.0

<html xmlns:o=3D"urn:schemas-microsoft-com:office:office"><head>
<meta http-equiv=3D"Content-Type" content=3D"text/html; charset=3Dus-ascii">
<style><!-- p.MsoNormal {margin:0cm; font-size:11.0pt;} --></style>
</head><body lang=3D"EN-GB" link=3D"#0563C1">
<div class=3D"WordSection1"><p class=3DMsoNormal>Web&nbsp;server <b>web-3</b> is down=
 since 09:10.<o:p></o:p></p>
<p class=3DMsoNormal><o:p>&nbsp;</o:p></p>
<p class=3DMsoNormal>Please call &amp; check.<o:p></o:p></p></div>
<script>alert('x')</script>
</body></html>
"""
)

APPLE_MAIL_ALTERNATIVE = crlf(
    """From: Alice <alice@acme.test>
Content-Type: multipart/alternative;
\tboundary="Apple-Mail=_2E1B7C6A-5F0F-4C4B-9C7A-1D5B3C6E7F80"
Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3774.600.62\\))
Subject: =?utf-8?Q?Caf=C3=A9_at_noon?=
Date: Tue, 3 Nov 2026 11:58:01 +0100
To: +447911123456@mobile.teleway.test

--Apple-Mail=_2E1B7C6A-5F0F-4C4B-9C7A-1D5B3C6E7F80
Content-Transfer-Encoding: quoted-printable
Content-Type: text/plain;
\tcharset=utf-8

Meet me at the caf=C3=A9 =E2=80=93 table by the window.

Sent from my iPhone
--Apple-Mail=_2E1B7C6A-5F0F-4C4B-9C7A-1D5B3C6E7F80
Content-Transfer-Encoding: quoted-printable
Content-Type: text/html;
\tcharset=utf-8

<html><head></head><body>Meet me at the <b>caf=C3=A9</b> =E2=80=93 table</body></html>
--Apple-Mail=_2E1B7C6A-5F0F-4C4B-9C7A-1D5B3C6E7F80--
"""
)

LIST_FOOTER = crlf(
    """From: ops@acme.test
To: 17816170000@teleway.test
Subject: [ops] Deploy done
List-Id: Operations <ops.lists.acme.test>
Content-Type: text/plain; charset=us-ascii

Deploy of 4.2 finished at 10:00.
_______________________________________________
ops mailing list
ops@lists.acme.test
https://lists.acme.test/mailman/listinfo/ops
"""
)

ISO_2022_JP = (
    b"From: taro@acme.test\r\n"
    b"To: +81312345678@sms.teleway.test\r\n"
    b"Subject: =?ISO-2022-JP?B?GyRCMnE1RBsoQg==?=\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=ISO-2022-JP\r\n"
    b"Content-Transfer-Encoding: 7bit\r\n"
    b"\r\n" + "会議は十時です。".encode("iso-2022-jp") + b"\r\n"
)

MISSING_CLOSING_BOUNDARY = crlf(
    """From: bob@acme.test
Subject: Cut off
Content-Type: multipart/mixed; boundary="XYZ"

--XYZ
Content-Type: text/plain; charset=utf-8

The text survives.
--XYZ
Content-Type: application/pdf; name="a.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQK
"""
)

WRONG_BOUNDARY = crlf(
    """From: bob@acme.test
Subject: Broken
Content-Type: multipart/mixed; boundary="NOT-THERE"

--SOMETHING-ELSE
Content-Type: text/plain

lost
--SOMETHING-ELSE--
"""
)

MISSING_CHARSET_UTF8 = (
    b"From: bob@acme.test\r\nSubject: x\r\nContent-Type: text/plain\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\n" + "Grüße aus Köln – 10°C".encode() + b"\r\n"
)

MISSING_CHARSET_LATIN1 = (
    b"From: bob@acme.test\r\nSubject: x\r\nContent-Type: text/plain\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\n" + "Grüße, señor".encode("latin-1") + b"\r\n"
)

EIGHT_BIT_HEADERS = (
    b"From: =?utf-8?q?J=C3=BCrgen?= <juergen@acme.test>\r\n"
    + "Subject: Größe: 5 – Привет\r\n".encode()
    + b"Content-Type: text/plain; charset=utf-8\r\n\r\nok\r\n"
)

FORWARDED_AS_ATTACHMENT = crlf(
    """From: bob@acme.test
Subject: Fwd: Alarm
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: message/rfc822

From: monitor@acme.test
Subject: Alarm
Content-Type: text/plain; charset=utf-8

Disk full on db-1
--outer--
"""
)

REPLY_WITH_QUOTE = crlf(
    """From: bob@acme.test
Subject: Re: Shift
Content-Type: text/plain; charset=utf-8

Yes, I can take it.

--
Bob Smith | ACME Corp | +1 555 0100

On Mon, 2 Nov 2026 at 09:00, Alice <alice@acme.test> wrote:
> Can you take the night shift?
> Thanks
""".replace("\n--\n", "\n-- \n")  # RFC 3676 4.3: dash dash space
)

OUTLOOK_REPLY = crlf(
    """From: bob@acme.test
Subject: RE: Shift
Content-Type: text/plain; charset=utf-8

Confirmed.

-----Original Message-----
From: Alice
Sent: Monday
Can you take it?
"""
)


def body(raw: bytes, *, signature: bool = False, quotes: bool = False) -> str:
    return sms_body(parse_email(raw), signature=signature, quotes=quotes)


def test_outlook_html_only() -> None:
    parsed = parse_email(OUTLOOK_HTML_ONLY)
    assert parsed.subject == "Server down"
    assert sms_body(parsed, signature=False, quotes=False) == (
        "Web server web-3 is down since 09:10.\nPlease call & check."
    )
    assert parsed.from_addresses == ("bob@acme.test",)


def test_apple_mail_prefers_the_plain_part() -> None:
    parsed = parse_email(APPLE_MAIL_ALTERNATIVE)
    assert parsed.subject == "Café at noon"
    assert sms_body(parsed, signature=False, quotes=False) == (
        "Meet me at the café – table by the window.\nSent from my iPhone"
    )
    assert body(APPLE_MAIL_ALTERNATIVE, signature=True) == (
        "Meet me at the café – table by the window."
    )
    assert parsed.attachments == ()  # the HTML alternative is not an attachment


def test_mailing_list_footer_goes_with_signature_stripping() -> None:
    assert body(LIST_FOOTER, signature=True) == "Deploy of 4.2 finished at 10:00."
    assert "mailing list" in body(LIST_FOOTER)


def test_iso_2022_jp() -> None:
    parsed = parse_email(ISO_2022_JP)
    assert parsed.subject == "会議"
    assert sms_body(parsed, signature=False, quotes=False) == "会議は十時です。"


def test_missing_closing_boundary_keeps_what_was_sent() -> None:
    parsed = parse_email(MISSING_CLOSING_BOUNDARY)
    assert sms_body(parsed, signature=False, quotes=False) == "The text survives."
    [pdf] = parsed.attachments
    assert pdf.content_type == "application/pdf" and pdf.data == b"%PDF-1.4\n"
    assert "CloseBoundaryNotFoundDefect" in parsed.defects


def test_boundary_that_never_appears_is_refused_clearly() -> None:
    with pytest.raises(UnreadableEmail, match="broken MIME structure"):
        parse_email(WRONG_BOUNDARY)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(MISSING_CHARSET_UTF8, "Grüße aus Köln – 10°C"), (MISSING_CHARSET_LATIN1, "Grüße, señor")],
)
def test_missing_charset(raw: bytes, expected: str) -> None:
    assert body(raw) == expected


def test_eight_bit_headers_are_read_as_utf8() -> None:
    parsed = parse_email(EIGHT_BIT_HEADERS)
    assert parsed.subject == "Größe: 5 – Привет"
    assert parsed.from_addresses == ("juergen@acme.test",)


def test_forwarded_message_attachment_gives_its_text() -> None:
    assert body(FORWARDED_AS_ATTACHMENT) == "Disk full on db-1"


def test_quote_and_signature_stripping_are_per_account() -> None:
    assert body(REPLY_WITH_QUOTE, signature=True, quotes=True) == "Yes, I can take it."
    assert body(REPLY_WITH_QUOTE, quotes=True) == (
        "Yes, I can take it.\n--\nBob Smith | ACME Corp | +1 555 0100"
    )
    kept = body(REPLY_WITH_QUOTE)
    assert "> Can you take the night shift?" in kept
    assert body(OUTLOOK_REPLY, quotes=True) == "Confirmed."


@pytest.mark.parametrize(
    ("charset", "text"),
    [
        ("windows-1255", "שלום עולם"),
        ("iso-8859-6", "مرحبا"),
        ("koi8-r", "Привет"),
        ("shift_jis", "こんにちは"),
        ("gb2312", "你好"),
        ("utf-8", "emoji 🎉 ok"),
    ],
)
def test_any_charset_base64(charset: str, text: str) -> None:
    raw = (
        b"From: bob@acme.test\r\nSubject: t\r\nMIME-Version: 1.0\r\n"
        + f"Content-Type: text/plain; charset={charset}\r\n".encode()
        + b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(text.encode(charset)).replace(b"\n", b"\r\n")
    )
    assert body(raw) == text


def test_unknown_charset_falls_back() -> None:
    assert decode_text("naïve".encode(), "x-no-such-charset") == "naïve"
    assert decode_text(b"caf\xe9", "x-no-such-charset") == "café"


def test_html_to_text_blocks_lists_and_quotes() -> None:
    html = (
        "<p>Hi&nbsp;there</p><ul><li>one</li><li>two</li></ul>"
        "<blockquote>old text</blockquote><style>p{}</style>"
    )
    lines = [line for line in html_to_text(html).split("\n") if line]
    assert lines == ["Hi there", "- one", "- two", "> old text"]
    assert strip_quotes(html_to_text(html)).split() == ["Hi", "there", "-", "one", "-", "two"]


def test_signature_marker_only_on_its_own_line() -> None:
    assert strip_signature("a -- b\nc") == "a -- b\nc"
    assert strip_signature("a\n-- \nsig") == "a"


def test_attachments_by_device() -> None:
    assert device_accepts(Device.FAX, "application/pdf")
    assert device_accepts(Device.FAX, "image/tiff")
    assert device_accepts(
        Device.FAX, "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    )
    assert not device_accepts(Device.FAX, "audio/wav")
    assert device_accepts(Device.SMS, "audio/mpeg")
    assert device_accepts(Device.HOME, "audio/wav")
    assert not device_accepts(Device.MOBILE, "application/pdf")
    parsed = parse_email(MISSING_CLOSING_BOUNDARY)
    assert attachments_for(parsed, [Device.SMS]) == ([], list(parsed.attachments))
    assert attachments_for(parsed, [Device.SMS, Device.FAX]) == (list(parsed.attachments), [])


@given(st.binary(max_size=3000))
def test_parser_never_crashes_on_bytes(raw: bytes) -> None:
    try:
        parsed = parse_email(raw)
    except UnreadableEmail:
        return
    sms_body(parsed, signature=True, quotes=True)


_headers = st.lists(
    st.sampled_from(
        [
            b"Content-Type: multipart/mixed; boundary=b",
            b"Content-Type: text/html; charset=utf-7",
            b"Content-Type: text/plain; charset=\xff\xfe",
            b"Content-Transfer-Encoding: base64",
            b"Content-Transfer-Encoding: quoted-printable",
            b"Subject: =?utf-8?b?broken",
            b"From: <<<@@@>>>",
            b"Content-Disposition: attachment; filename*=utf-8''%ff%fe",
            b"MIME-Version: 1.0",
        ]
    ),
    max_size=6,
)


@given(_headers, st.binary(max_size=500), st.booleans())
def test_parser_never_crashes_on_mime_shaped_input(
    headers: list[bytes], payload: bytes, with_parts: bool
) -> None:
    raw = b"\r\n".join(headers) + b"\r\n\r\n"
    if with_parts:
        raw += b"--b\r\nContent-Type: text/plain\r\n\r\n" + payload + b"\r\n--b--\r\n"
    else:
        raw += payload
    try:
        parsed = parse_email(raw)
    except UnreadableEmail:
        return
    sms_body(parsed, signature=True, quotes=True)
