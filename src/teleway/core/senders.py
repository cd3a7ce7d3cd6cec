"""Which sender ids an account may send from: the `allowed_senders` setting.

An operator who resells SMS usually registers each customer's originators with the carriers
(an alphanumeric "ACME", a range of the customer's own numbers) and must stop a customer from
sending as someone else. `allowed_senders` lists what the account may name as sender:

- an exact sender id: `+15551234567` (international), `12345` (short code), `ACME`
  (alphanumeric, compared exactly: upper and lower case show differently on the handset);
- a numeric prefix ending in `*`: `+1555123*` allows every international number starting so.

An empty list allows any valid sender (the default). A message that names no sender uses the
account's `sender_id`, and that one is always allowed: the operator set it.
"""

from __future__ import annotations

WILDCARD = "*"


def sender_allowed(allowed: tuple[str, ...], sender: str | None, default: str | None) -> bool:
    """May a message name `sender` (None: none named) under `allowed`?"""
    if not allowed or sender is None or sender == default:
        return True
    for pattern in allowed:
        if pattern[-1] == WILDCARD:
            digits = sender[1:] if sender[:1] == "+" else sender
            if sender.startswith(pattern[:-1]) and digits.isascii() and digits.isdigit():
                return True
        elif pattern == sender:
            return True
    return False
