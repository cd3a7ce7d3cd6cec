"""An e-mail as the gateway sees it: subject, readable body text, attachments, loop markers.

Parsed with the standard library's `email` package (policy `default`): RFC 2047 encoded words,
quoted-printable and base64, nested multiparts. What real mailers send is often not quite right,
so every step tolerates it: a missing or wrong charset falls back to UTF-8 then Windows-1252,
raw 8-bit header bytes are read as UTF-8, a broken multipart keeps the parts found. Only a
message with nothing readable at all is refused (`UnreadableEmail`).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email.errors
import email.header
import email.utils
import functools
import quopri
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.parser import BytesParser
from typing import BinaryIO

from teleway.core.model import Device
from teleway.render.text import (
    html_to_text,
    normalise_whitespace,
    one_line,
    strip_quotes,
    strip_signature,
)

MAX_SUBJECT_CHARS = 998  # RFC 5322 2.1.1: a header line is at most 998 characters
MAX_PARTS = 500  # more MIME parts than any real e-mail has: a hostile message, refused

# What each device can carry (seeds/smtp-gateway.txt, "Available inputs"). SMS and the phones
# take the text; audio attachments are kept for SMS (stored with the message, the SMS carries the
# text) and played to phones; a fax takes documents, text and images.
_OFFICE = frozenset(
    {
        "application/msword",
        "application/rtf",
        "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
        "application/vnd.oasis.opendocument.text",
        "application/vnd.oasis.opendocument.spreadsheet",
        "application/vnd.oasis.opendocument.presentation",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "text/rtf",
    }
)


def device_accepts(device: Device, content_type: str) -> bool:
    """Whether an attachment of `content_type` is something `device` can deliver."""
    content_type = content_type.lower()
    if device is Device.FAX:
        return (
            content_type in _OFFICE
            or content_type == "application/pdf"
            or content_type.startswith(("text/", "image/"))
        )
    return content_type.startswith("audio/")


class UnreadableEmail(ValueError):
    """Nothing in the message can be delivered; `reason` goes into the 5xx reply."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class MailAttachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, kw_only=True)
class ParsedEmail:
    subject: str
    body: str  # readable text: the text/plain part, else the HTML converted; not yet stripped
    from_addresses: tuple[str, ...]  # From: header addresses, lower case
    reply_to: str | None
    message_id: str | None
    auto_submitted: str | None  # RFC 3834 Auto-Submitted, lower case ("no" when absent)
    attachments: tuple[MailAttachment, ...]
    defects: tuple[str, ...]  # what the parser found wrong (logged, not fatal)


def _charset_codec(charset: str | None) -> str | None:
    if not charset:
        return None
    if len(charset) <= _CACHED_VALUE_CHARS:
        return _cached_codec(charset)
    return _codec(charset)


def _codec(charset: str) -> str | None:
    try:
        return codecs.lookup(charset.strip().strip('"')).name
    except (LookupError, ValueError):  # unknown, or not even a name ("\x00utf-8")
        return None


_cached_codec = functools.lru_cache(maxsize=128)(_codec)  # senders use a handful of charsets


def decode_text(payload: bytes, charset: str | None) -> str:
    """Bytes of a text part as Unicode: its declared charset, else UTF-8, else Windows-1252
    (which maps every byte, so nothing is refused for an unknown charset)."""
    codec = _charset_codec(charset)
    if codec is not None and codec not in ("ascii", "us-ascii"):
        try:
            return payload.decode(codec)
        except UnicodeDecodeError:
            pass
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if codec is not None:
        return payload.decode(codec, errors="replace")
    return payload.decode("cp1252", errors="replace")


def _header_text(value: object) -> str:
    """A header value as text: RFC 2047 encoded words decoded, raw 8-bit bytes (not encoded,
    as some mailers send) read as UTF-8, else Windows-1252."""
    text = str(value)
    if not text.isascii() and any("\udc80" <= ch <= "\udcff" for ch in text):
        raw = text.encode("utf-8", errors="surrogateescape")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("cp1252", errors="replace")
    if "=?" not in text:
        return text
    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except (email.errors.HeaderParseError, LookupError, UnicodeError, ValueError):
        return text  # an encoded word we cannot read stays as it was written


def _header(message: Message, name: str) -> str | None:
    # raw_items: the value as received (compat32's get() turns 8-bit bytes into U+FFFD)
    wanted = name.lower()
    for key, value in message.raw_items():
        if key.lower() == wanted:
            return _header_text(value)
    return None


def _addresses(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    if len(value) <= _CACHED_VALUE_CHARS:  # a sender's From: line comes back message after message
        return _cached_addresses(value)
    return _read_addresses(value)


def _read_addresses(value: str) -> tuple[str, ...]:
    found = []
    for _, address in email.utils.getaddresses([value]):
        if "@" in address:
            found.append(address.strip().lower())
    return tuple(found)


_CACHED_VALUE_CHARS = 256  # header values longer than this are read every time, not cached
_cached_addresses = functools.lru_cache(maxsize=512)(_read_addresses)


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        inner = part.get_payload()
        return inner if isinstance(inner, str) else ""
    text = decode_text(payload, part.get_content_charset())
    if part.get_content_subtype() == "html":
        return html_to_text(text)
    return text


def _is_attachment(part: Message) -> bool:
    disposition = (part.get_content_disposition() or "").lower()
    if disposition == "attachment":
        return True
    # images, audio, documents, inline or not
    return part.get_content_maintype() not in ("text", "multipart", "message")


def _filename(part: Message, index: int) -> str:
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if name:
        return one_line(_header_text(name))[:255]
    subtype = part.get_content_subtype() or "bin"
    return f"attachment-{index}.{subtype}"


def _body_part(message: Message) -> Message | None:
    """The part a person reads: text/plain preferred over HTML inside alternatives, the first
    text part otherwise; a forwarded message's (message/rfc822) body when there is no other."""
    html: Message | None = None
    other: Message | None = None
    for part in message.walk():
        if part.get_content_maintype() != "text" or _is_explicit_attachment(part):
            continue
        subtype = part.get_content_subtype()
        if subtype == "plain":
            return part
        if subtype == "html":
            html = html or part
        else:
            other = other or part
    return html or other


def _is_explicit_attachment(part: Message) -> bool:
    return (part.get_content_disposition() or "").lower() == "attachment"


def parse_email(source: bytes | BinaryIO) -> ParsedEmail:
    """Read an RFC 5322 message (headers and body, as received in DATA)."""
    if isinstance(source, bytes):
        simple = parse_simple_email(source)
        if simple is not None:
            return simple
    return parse_mime_email(source)


def parse_mime_email(source: bytes | BinaryIO) -> ParsedEmail:
    """Read any message with the standard library's parser (every MIME structure)."""
    # compat32: the `default` policy parses every header into objects, 15 times slower for a
    # 1 KB e-mail; the few headers used here are decoded by _header_text
    parser = BytesParser(policy=policy.compat32)
    message = parser.parsebytes(source) if isinstance(source, bytes) else parser.parse(source)
    if message.get_content_maintype() == "multipart" and not message.is_multipart():
        # RFC 2046 5.1.1: the boundary never appears, so no part can be told from another
        raise UnreadableEmail("broken MIME structure: the multipart boundary never appears")
    parts = list(message.walk())
    if len(parts) > MAX_PARTS:
        raise UnreadableEmail(f"{len(parts)} MIME parts; at most {MAX_PARTS} are read")
    subject = one_line(_header(message, "subject") or "")[:MAX_SUBJECT_CHARS]
    body_part = _body_part(message)
    body = _part_text(body_part) if body_part is not None else ""
    if body_part is None and not message.is_multipart():
        raw = message.get_payload()
        body = raw if isinstance(raw, str) else ""
    attachments: list[MailAttachment] = []
    for index, part in enumerate(parts):
        if part is body_part or part.is_multipart() or (part is message and body_part is None):
            continue
        if part.get_content_maintype() == "message":
            continue
        if part.get_content_maintype() == "text" and not _is_explicit_attachment(part):
            # other text parts (the HTML alternative, a forwarded message's text) stay out
            continue
        if not _is_attachment(part):
            continue
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes) or not data:
            continue
        attachments.append(
            MailAttachment(
                filename=_filename(part, index),
                content_type=part.get_content_type(),
                data=data,
            )
        )
    defects = tuple(
        sorted({type(d).__name__ for part in parts for d in getattr(part, "defects", ())})
    )
    if message.is_multipart() and body_part is None and not attachments:
        payload = message.get_payload()
        if isinstance(payload, str) or not payload:
            raise UnreadableEmail("broken MIME structure: no part could be read")
    return _parsed(
        lambda name: _header(message, name), body, tuple(attachments), defects, subject=subject
    )


def _parsed(
    header: Callable[[str], str | None],
    body: str,
    attachments: tuple[MailAttachment, ...],
    defects: tuple[str, ...],
    *,
    subject: str | None = None,
) -> ParsedEmail:
    """The headers the gateway reads (`header(name)`: the first such field, decoded)."""
    if subject is None:
        subject = one_line(header("subject") or "")[:MAX_SUBJECT_CHARS]
    auto = (header("auto-submitted") or "no").strip().lower()
    reply_to = _addresses(header("reply-to"))
    return ParsedEmail(
        subject=subject,
        body=body,
        from_addresses=_addresses(header("from")),
        reply_to=reply_to[0] if reply_to else None,
        message_id=header("message-id"),
        auto_submitted=auto.split(";")[0].strip() or "no",
        attachments=attachments,
        defects=defects,
    )


# --- the fast path: one text/plain part, headers in plain ASCII --------------------------------
#
# Most e-mails to the gateway are one short text/plain part (scripts, monitoring, phones). For
# those the standard parser's line-by-line feed and header machinery are most of the cost, so
# they are read here with byte-string operations. The rules below admit only messages that
# the standard parser (compat32) reads without any defect and in one obvious way; everything
# else returns None and goes to `parse_mime_email`. tests/render/test_render_email_fast_path.py
# checks that both give the same ParsedEmail on the corpus and on generated messages.

# RFC 5322 2.2 field name: printable ASCII but ":" (the parser's own header-line pattern)
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
# characters str.splitlines() cuts a line at, other than CRLF: the parser would see more lines
_OTHER_LINE_BREAKS = re.compile(rb"[\r\n\x0b\x0c\x1c\x1d\x1e]")
_UUENCODE = frozenset({"x-uuencode", "uuencode", "uue", "x-uue"})


def parse_simple_email(data: bytes) -> ParsedEmail | None:
    """`parse_mime_email(data)` for a single text/plain part with ASCII headers, or None when
    the message is not that simple."""
    head, blank, body = data.partition(b"\r\n\r\n")
    if not blank or not head.isascii() or head[:1] in (b" ", b"\t"):
        return None
    if _OTHER_LINE_BREAKS.search(head.replace(b"\r\n", b"")):
        return None
    fields: list[tuple[str, str]] = []
    for line in head.decode("ascii").split("\r\n"):
        if line[:1] in (" ", "\t"):  # folded: the value goes on, line break included
            name, value = fields[-1]
            fields[-1] = (name, value + "\r\n" + line)
            continue
        name, colon, value = line.partition(":")
        if not colon or not _FIELD_NAME.fullmatch(name) or line.startswith("From "):
            return None
        fields.append((name.lower(), value.lstrip(" \t")))

    def first(wanted: str) -> str | None:
        for name, value in fields:
            if name == wanted:
                return value.rstrip("\r\n")
        return None

    content_type, charset = _content_type(first("content-type"))
    if content_type != "text/plain" or _disposition(first("content-disposition")) == "attachment":
        return None
    encoding = (first("content-transfer-encoding") or "").lower()
    payload = body
    if encoding == "quoted-printable":
        payload = quopri.decodestring(body)
    elif encoding == "base64":
        joined = b"".join(body.splitlines())
        if len(joined) % 4:
            return None  # the parser records a padding defect: its business
        try:
            payload = base64.b64decode(joined, validate=True)
        except binascii.Error:
            return None
    elif encoding in _UUENCODE:
        return None

    def header(wanted: str) -> str | None:
        value = first(wanted)
        return None if value is None else _header_text(value)

    return _parsed(header, decode_text(payload, charset), (), ())


@functools.lru_cache(maxsize=256)
def _content_type_of(value: str) -> tuple[str, str | None]:
    probe = Message()
    probe["Content-Type"] = value
    return probe.get_content_type(), probe.get_content_charset()


def _content_type(value: str | None) -> tuple[str, str | None]:
    """(type, charset) as the standard parser reads them (RFC 2045 5.2: text/plain by
    default); most senders send the same few values, so they are remembered."""
    if value is None:
        return "text/plain", None
    if len(value) > _CACHED_VALUE_CHARS:
        return _content_type_of.__wrapped__(value)
    return _content_type_of(value)


def _disposition(value: str | None) -> str | None:
    if value is None:
        return None
    probe = Message()
    probe["Content-Disposition"] = value
    return probe.get_content_disposition()


def sms_body(parsed: ParsedEmail, *, signature: bool, quotes: bool) -> str:
    """The body text as it goes into the template: optional signature and quote stripping (per
    account), white space normalised."""
    text = parsed.body.replace("\r\n", "\n")
    if quotes:
        text = strip_quotes(text)
    if signature:
        text = strip_signature(text)
    return normalise_whitespace(text)


def attachments_for(
    parsed: ParsedEmail, devices: Iterable[Device]
) -> tuple[list[MailAttachment], list[MailAttachment]]:
    """(kept, ignored): an attachment is kept when one of the recipients' devices takes it."""
    wanted = set(devices)
    kept: list[MailAttachment] = []
    ignored: list[MailAttachment] = []
    for attachment in parsed.attachments:
        if any(device_accepts(d, attachment.content_type) for d in wanted):
            kept.append(attachment)
        else:
            ignored.append(attachment)
    return kept, ignored
