"""The fast path for simple e-mails (one text/plain part, ASCII headers) gives exactly the
ParsedEmail the full MIME parser gives, or leaves the message to it: checked on the corpus of
tests/render/test_render_email.py and on generated messages with encoded headers, folded
lines, every transfer encoding and many charsets, plus byte-level damage."""

from __future__ import annotations

import base64
import quopri
import re
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY

import pytest
import test_render_email as corpus_module
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from teleway.render import email as render_email
from teleway.render.email import (
    ParsedEmail,
    UnreadableEmail,
    parse_email,
    parse_mime_email,
    parse_simple_email,
)
from teleway.render.text import normalise_whitespace

CORPUS = {
    name: value
    for name, value in vars(corpus_module).items()
    if name.isupper() and isinstance(value, bytes)
}


def full(raw: bytes) -> ParsedEmail | None:
    try:
        return parse_mime_email(raw)
    except UnreadableEmail:
        return None


def agrees(raw: bytes) -> bool:
    """The fast path agrees with the full parser; True when it took the message."""
    fast = parse_simple_email(raw)
    if fast is not None:
        assert fast == full(raw)
    return fast is not None


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus(name: str) -> None:
    agrees(CORPUS[name])


@pytest.mark.parametrize("charset", [b'"\x00utf-8"', b"utf-8\x00", b"no-such-charset"])
def test_a_charset_that_is_no_name_reads_as_an_unknown_one(charset: bytes) -> None:
    """A NUL in the charset parameter made codecs.lookup raise ValueError (not LookupError):
    found by the damaged-messages test; now both paths read the body as of unknown charset."""
    raw = b"From: a@example.com\r\nSubject: hi\r\nContent-Type: text/plain; charset=" + charset
    raw += b"\r\n\r\nhello there\r\n"
    agrees(raw)
    assert full(raw) is not None


def test_the_simple_corpus_messages_take_the_fast_path() -> None:
    taken = {name for name, raw in CORPUS.items() if agrees(raw)}
    assert {"LIST_FOOTER", "REPLY_WITH_QUOTE", "OUTLOOK_REPLY"} <= taken
    assert "OUTLOOK_HTML_ONLY" not in taken  # HTML: the full parser
    assert "APPLE_MAIL_ALTERNATIVE" not in taken  # multipart: the full parser
    assert "EIGHT_BIT_HEADERS" not in taken  # raw 8-bit header bytes: the full parser


def test_parse_email_uses_the_fast_path_for_simple_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(source: object) -> ParsedEmail:
        raise AssertionError("the full parser was used")

    monkeypatch.setattr(render_email, "parse_mime_email", refuse)
    parsed = parse_email(
        b"From: Ann <ann@acme.test>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        b"\r\n" + "Grüße\r\n".encode()
    )
    assert parsed.subject == "Grüße"
    assert parsed.from_addresses == ("ann@acme.test",)
    assert parsed.body == "Grüße\r\n"


def test_what_the_fast_path_leaves_alone() -> None:
    plain = b"Subject: x\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
    assert agrees(plain)
    for raw in [
        b"Subject: x\r\n\r\n",  # no body is fine ...
        plain.replace(b"text/plain", b"text/html"),
        plain.replace(b"text/plain", b"multipart/mixed; boundary=b"),
        plain.replace(b"Subject: x", b"Subject: Gr\xc3\xbc\xc3\x9fe"),  # 8-bit header
        plain.replace(b"Subject: x", b" folded first"),
        plain.replace(b"Subject: x", b"Subject : x"),  # not a field name: body starts here
        plain.replace(b"Subject: x", b"From bob Mon Nov  2 09:00:00 2026"),  # mbox line
        plain.replace(b"Subject: x\r\n", b"Subject: x\n"),  # bare LF in the header
        plain.replace(b"Subject: x", b"Subject: x\x0cy"),  # a form feed splits the line
        plain + b"",
        b"Subject: x\r\nContent-Transfer-Encoding: base64\r\n\r\nYWJj\r\nZA\r\n",  # padding
        b"Subject: x\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!\r\n",
        b"Subject: x\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 a\r\n",
        b"Subject: x\r\nContent-Disposition: attachment\r\n\r\nbody\r\n",
        b"Subject: x\r\n",  # headers only
    ]:
        agrees(raw)
    assert parse_simple_email(plain.replace(b"text/plain", b"text/html")) is None
    assert parse_simple_email(b"Subject: x\r\n") is None


CHARSETS = ["utf-8", "iso-8859-1", "windows-1252", "koi8-r", "shift_jis", "iso-2022-jp", "gb2312"]
TEXT = st.text(
    alphabet=st.sampled_from(
        list("abc XYZ 019.,;:!?-_=()<>@\"'\t\r\n") + list("éßüñ€–Привет日本語🎉\u200b\xa0")
    ),
    max_size=120,
)


def encodable(text: str, charset: str) -> str:
    return text.encode(charset, errors="ignore").decode(charset, errors="ignore")


# header lines that are legal but odd: repeated, empty, padded, unusual spelling
TRICKY_FIELDS = [
    b"Subject:",
    b"subject: a second subject",
    b"SUBJECT:\t=?iso-8859-1?q?d=E9j=E0?=  ",
    b"From:",
    b"from: other@acme.test",
    b"Reply-To: <>",
    b"Message-ID:  <a@b.test> ",
    b"X-Weird:value:with:colons",
    b"Content-Type: text/plain; charset=utf-8; charset=latin1",
    b'Content-Type: text/plain; charset="unknown-8bit"',
    b"Content-Transfer-Encoding:  base64",
    b"Content-Transfer-Encoding: base64 ",
    b"Content-Transfer-Encoding: 7BIT",
    b"Content-Disposition: attachment; filename=a.txt",
    b"Content-Disposition: INLINE",
    b"Auto-Submitted: auto-replied; owner-email=x@acme.test",
    b"Subject: folded\r\n second line\r\n\tthird",
    b"Subject: =?utf-8?b?8J+OiQ==?= =?utf-8?q?_and_more?=",
    b"Subject: =?bogus?q?x?=",
]


@st.composite
def simple_messages(draw: st.DrawFn) -> bytes:
    """Hand-built messages of the shapes mailers send: encoded words, folding, odd case,
    parameters quoted or not, every transfer encoding."""
    charset = draw(st.sampled_from(CHARSETS))
    text = encodable(draw(TEXT), charset)
    subject_text = draw(TEXT).replace("\r", "").replace("\n", " ")
    lines: list[bytes] = []
    if draw(st.booleans()):
        header_charset = draw(st.sampled_from(["utf-8", "iso-8859-1"]))
        encoded = Header(encodable(subject_text, header_charset), header_charset)
        value = encoded.encode(maxlinelen=draw(st.sampled_from([40, 76, 998])))
        lines.append(f"Subject: {value}".replace("\n", "\r\n").encode())
    elif subject_text.isascii():
        lines.append(
            f"Subject:{draw(st.sampled_from(['', ' ', '  ', chr(9)]))}{subject_text}".encode()
        )
    name = draw(st.sampled_from(["Ann", '"Smith, Ann"', "=?utf-8?q?J=C3=BCrgen?=", ""]))
    lines.append(f"From: {name} <Ann.Smith@Acme.test>".encode() if name else b"From: ann@acme.test")
    if draw(st.booleans()):
        lines.append(b"Reply-To: other@acme.test, third@acme.test")
    if draw(st.booleans()):
        lines.append(b"Message-ID: <1234.5678@mail.acme.test>")
    if draw(st.booleans()):
        lines.append(
            draw(st.sampled_from([b"Auto-Submitted: auto-generated", b"auto-submitted: No"]))
        )
    cte = draw(
        st.sampled_from(["", "7bit", "8bit", "quoted-printable", "Base64", "QUOTED-PRINTABLE"])
    )
    params = draw(
        st.sampled_from(
            [
                f"; charset={charset}",
                f'; charset="{charset}"',
                f";\r\n\tcharset={charset.upper()}",
                f"; format=flowed; charset={charset}; delsp=yes",
                "",
                "; charset*=utf-8''utf-8",
            ]
        )
    )
    ctype = draw(st.sampled_from(["text/plain", "TEXT/Plain", "text/plain "]))
    if draw(st.booleans()) or params:
        lines.append(f"Content-Type: {ctype}{params}".encode())
    if cte:
        lines.append(f"Content-Transfer-Encoding: {cte}".encode())
    if draw(st.booleans()):
        lines.append(draw(st.sampled_from([b"Content-Disposition: inline", b"MIME-Version: 1.0"])))
    lines += draw(st.lists(st.sampled_from(TRICKY_FIELDS), max_size=3))
    lines = draw(st.permutations(lines))
    payload = text.encode(charset, errors="ignore")
    if cte.lower() == "quoted-printable":
        payload = quopri.encodestring(payload).replace(b"\n", b"\r\n")
    elif cte.lower() == "base64":
        payload = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(simple_messages())
def test_generated_simple_messages(raw: bytes) -> None:
    agrees(raw)


@settings(max_examples=300)
@given(simple_messages(), st.integers(min_value=0), st.binary(min_size=1, max_size=3))
def test_damaged_messages(raw: bytes, where: int, junk: bytes) -> None:
    at = where % (len(raw) + 1)
    agrees(raw[:at] + junk + raw[at:])


@settings(max_examples=200)
@given(st.sampled_from(CHARSETS), TEXT, TEXT)
def test_messages_written_by_the_standard_library(charset: str, subject: str, text: str) -> None:
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = "Ann <ann@acme.test>"
    message["Subject"] = subject.replace("\r", "").replace("\n", " ")
    try:
        message.set_content(encodable(text, charset), charset=charset)
        raw = message.as_bytes()
    except (UnicodeError, ValueError, LookupError):
        return
    assert agrees(raw) or not full(raw)


def normalised_line_by_line(text: str) -> str:
    """normalise_whitespace as first written: one regular-expression pass per line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\u200b", "").replace("\ufeff", "").replace("\xa0", " ")
    lines = (re.sub(r"[ \t\f\v]+", " ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


@given(
    st.text(alphabet=st.sampled_from(list(" \t\f\v\r\nab\xa0\u200b\ufeff\u2003\x1c")), max_size=40)
)
def test_whitespace_normalisation_is_unchanged(text: str) -> None:
    assert normalise_whitespace(text) == normalised_line_by_line(text)
