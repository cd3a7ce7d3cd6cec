"""`core.senders`: which sender ids an account may name."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teleway.core.senders import sender_allowed

ALLOWED = ("ACME", "+4479111*", "12345")


@pytest.mark.parametrize(
    ("sender", "allowed"),
    [
        (None, True),  # none named: the account's own sender
        ("DEFAULT", True),  # the account's sender_id is always allowed
        ("ACME", True),
        ("Acme", False),  # shown differently on the handset: not the same sender
        ("ACME2", False),
        ("+447911123456", True),
        ("+4479111", True),
        ("+447912123456", False),
        ("447911123456", False),  # not the international form the prefix names
        ("+4479111abc", False),  # a prefix allows numbers only
        ("12345", True),
        ("123456", False),
    ],
)
def test_rules(sender: str | None, allowed: bool) -> None:
    assert sender_allowed(ALLOWED, sender, "DEFAULT") is allowed


@given(st.one_of(st.none(), st.text(max_size=16)))
def test_an_empty_list_allows_everything(sender: str | None) -> None:
    assert sender_allowed((), sender, None)


@given(st.text(alphabet="0123456789", min_size=1, max_size=15))
def test_a_prefix_allows_exactly_the_numbers_it_starts(digits: str) -> None:
    sender = "+" + digits
    assert sender_allowed(("+44*",), sender, None) is digits.startswith("44")
    assert sender_allowed((sender,), sender, None)
