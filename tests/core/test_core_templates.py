"""E-mail to SMS text: the account's template, and no dangling separators."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from teleway.core.model import Content, Message, Options, Origin, Settings
from teleway.core.templates import sms_text


def message(subject: str, text: str) -> Message:
    return Message(
        id="m1",
        account_id=1,
        origin=Origin.SMTP,
        submitter="alice@example.com",
        content=Content(subject=subject, text=text),
        options=Options(),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("subject", "body", "template", "expected"),
    [
        ("Meeting", "at 10", "{subject},{body}", "Meeting,at 10"),
        ("", "at 10", "{subject},{body}", "at 10"),
        ("Meeting", "", "{subject},{body}", "Meeting"),
        ("Meeting", "  ", "{subject}: {body}", "Meeting"),
        ("Meeting", "", "{from} - {subject} | {body}", "alice@example.com - Meeting"),
        ("Meeting", "at 10", "{from}: {body}", "alice@example.com: at 10"),
    ],
)
def test_sms_text(subject: str, body: str, template: str, expected: str) -> None:
    assert sms_text(message(subject, body), Settings(sms_template=template)) == expected
