"""Plain text out of e-mail bodies: HTML to text, signatures, quoted replies, whitespace.

Written on the standard library's `html.parser`: e-mail HTML is small and simple (Outlook, Apple
Mail, web mailers), and an SMS needs the words, not a layout. No third-party converter is needed.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

# elements whose content is never shown to a reader
_HIDDEN = frozenset({"script", "style", "head", "title", "template", "noscript", "xml"})
# elements that start a new line in a browser (HTML Living Standard, 15.3 "flow content")
_BLOCK = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "fieldset",
        "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
        "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tr", "ul",
    }
)  # fmt: skip
MAX_HTML_CHARS = 4 * 1024 * 1024  # larger "HTML bodies" are cut before conversion


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.hidden = 0
        self.quote_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self.hidden += 1
        elif tag == "blockquote":
            self.quote_depth += 1
            self.chunks.append("\n")
        elif tag == "li":
            self.chunks.append("\n- ")
        elif tag in ("td", "th"):
            self.chunks.append(" ")
        elif tag in _BLOCK:
            self.chunks.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag == "blockquote":
            self.quote_depth = max(0, self.quote_depth - 1)
            self.chunks.append("\n")
        elif tag in _BLOCK:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if self.hidden:
            return
        if self.quote_depth:
            # quoted text from a reply keeps its mark so that quote stripping sees it
            data = re.sub(r"[ \t\r\f\v]+", " ", data)
            lines = data.split("\n")
            data = "\n".join(("> " + line) if line.strip() else line for line in lines)
        self.chunks.append(data)


def html_to_text(html: str) -> str:
    """The visible text of an HTML body, one line per block element, `> ` before quotes."""
    parser = _TextCollector()
    try:
        parser.feed(html[:MAX_HTML_CHARS])
        parser.close()
    except (AssertionError, ValueError):  # html.parser gives up on some broken markup
        pass
    text = "".join(parser.chunks).replace("\xa0", " ")
    # inside a paragraph, source line breaks are just spaces (HTML collapses white space)
    lines = [re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in text.split("\n")]
    return "\n".join(lines)


_SIGNATURE = re.compile(r"^(-- ?|--|_{5,}|—— ?)$")  # RFC 3676 4.3 "-- ", list footers (____)
_MOBILE_SIGNATURE = re.compile(r"^(Sent from my |Get Outlook for )", re.IGNORECASE)
_ATTRIBUTION = re.compile(r"^(On .{3,200} wrote:|.{3,200} (a écrit|schrieb|escribió) ?:)$")
_ORIGINAL = re.compile(r"^-{2,}\s*(Original Message|Forwarded message)\s*-{2,}$", re.IGNORECASE)
_OUTLOOK_HEADER = re.compile(r"^From: .+$")


def strip_signature(text: str) -> str:
    """Drop everything from the signature separator on (RFC 3676 4.3 `-- `, a line of `_`
    that mailing lists put before their footer, or a "Sent from my ..." line)."""
    lines = text.split("\n")
    for index, line in enumerate(lines):
        stripped = line.rstrip("\r")
        if _SIGNATURE.match(stripped) or _MOBILE_SIGNATURE.match(stripped.strip()):
            return "\n".join(lines[:index])
    return text


def strip_quotes(text: str) -> str:
    """Drop quoted replies: `>` lines, the "On ... wrote:" line before them, and Outlook's
    "-----Original Message-----" block with everything after it."""
    kept: list[str] = []
    for line in text.split("\n"):
        stripped = line.strip()
        if _ORIGINAL.match(stripped):
            break
        if stripped.startswith(">"):
            continue
        kept.append(line)
    # an attribution line right before the (removed) quote, possibly followed by blank lines
    while kept and not kept[-1].strip():
        kept.pop()
    if kept and _ATTRIBUTION.match(kept[-1].strip()):
        kept.pop()
    # Outlook replies without a marker line: "From: ..." begins the quoted header block
    for index, line in enumerate(kept):
        if index and _OUTLOOK_HEADER.match(line.strip()) and not kept[index - 1].strip():
            kept = kept[:index]
            break
    return "\n".join(kept)


def normalise_whitespace(text: str) -> str:
    """One space between words, no blank lines, no white space at either end: an SMS pays
    for every character. Line breaks between paragraphs stay (handsets show them)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\u200b", "").replace("\ufeff", "").replace("\xa0", " ")
    if "  " in text or "\t" in text or "\f" in text or "\v" in text:
        text = _BLANK_RUN.sub(" ", text)
    lines = (line.strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


# a run of blanks that is not already a single space; the regular expression engine costs
# ~30 ns a character, so text with single spaces only (most of it) is not given to it at all
_BLANK_RUN = re.compile(r"[ \t\f\v]{2,}|[\t\f\v]")


def one_line(text: str) -> str:
    """A header value on one line (subjects folded by the sender's mailer)."""
    return _SPACE_RUN.sub(" ", text).strip()


_SPACE_RUN = re.compile(r"\s+")
