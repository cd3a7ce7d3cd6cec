"""Turning a message into the text an SMS carries.

The account's template (default `{subject},{body}`, as the product has always done for e-mail)
applies to messages that have a subject; a message without one (SMPP, most HTTP) is sent as is.
"""

from __future__ import annotations

import string

from teleway.core.model import Message, Settings

PLACEHOLDERS = frozenset({"subject", "body", "from", "to"})


def template_problems(template: str) -> list[str]:
    """Why a template cannot be used; empty when it is fine."""
    problems: list[str] = []
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        return [f"malformed template: {exc}"]
    for name in fields:
        if name not in PLACEHOLDERS:
            problems.append(f"unknown placeholder {{{name}}}; use {sorted(PLACEHOLDERS)}")
    return problems


EDGE_SEPARATORS = " \t\r\n,;:-|"
"""What a template puts between subject and body; trimmed from the ends when one is empty."""


def sms_text(message: Message, settings: Settings, recipient: str = "") -> str:
    """The text to send by SMS for `message`."""
    content = message.content
    if not content.subject:
        return content.text
    values = {
        "subject": content.subject.strip(),
        "body": content.text.strip(),
        "from": message.submitter,
        "to": recipient,
    }
    if template_problems(settings.sms_template):
        text = f"{values['subject']},{values['body']}"
    else:
        text = settings.sms_template.format(**values)
    if not values["body"]:
        # "Subject," for a subject-only e-mail: no separator left dangling at either end
        text = text.strip(EDGE_SEPARATORS)
    return text
