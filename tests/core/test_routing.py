"""The route table: conditions, first match, failover tiers, weighted sharing, explanations."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teleway.core.routing import (
    Route,
    RouteError,
    RouteTable,
    SenderType,
    parse_tier,
    sender_type_of,
)

UK = "+447400123456"  # a GB mobile number
DE = "+4915112345678"
US = "+17816170000"


def table(*routes: Route, upstreams: tuple[str, ...] = ("a", "b", "c")) -> RouteTable:
    return RouteTable(routes=routes, upstreams=upstreams)


def test_parse_tier_weights_and_errors() -> None:
    tier = parse_tier("a:3, b:1")
    assert tier.members == (("a", 3), ("b", 1))
    assert parse_tier("c").members == (("c", 1),)
    for bad in ("", "a:0", "a:x", "a, a", "a:-1", ":3"):
        with pytest.raises(RouteError):
            parse_tier(bad)


def test_sender_type() -> None:
    assert sender_type_of("+4915112345678") is SenderType.NUMERIC
    assert sender_type_of("4915112345678") is SenderType.NUMERIC
    assert sender_type_of("ACME") is SenderType.ALPHANUMERIC
    assert sender_type_of(None) is None


def test_empty_table_is_every_upstream_in_order() -> None:
    choice = table().choose(UK)
    assert choice.route is None
    assert choice.candidates == ("a", "b", "c")
    assert any("default route" in r for r in choice.reasons)


def test_first_matching_route_decides_and_reasons_say_why() -> None:
    t = table(
        Route.build(name="german", countries=["DE"], upstreams=["b"]),
        Route.build(name="uk-mobile", prefixes=["+447"], upstreams=["c", "a"]),
        Route.build(name="rest", upstreams=["a"]),
    )
    choice = t.choose(UK)
    assert (choice.route, choice.candidates) == ("uk-mobile", ("c", "a"))
    assert choice.reasons[0] == "route german: skipped, country GB not in DE"
    assert "route uk-mobile: matches (prefix 447)" in choice.reasons
    assert t.choose(DE).route == "german"
    assert t.choose(US).candidates == ("a",)


def test_account_and_sender_type_conditions() -> None:
    t = table(
        Route.build(name="acme-alpha", accounts=["acme"], sender="alphanumeric", upstreams=["b"]),
        Route.build(name="numeric", sender="numeric", upstreams=["c"]),
    )
    assert t.choose(UK, account="acme", sender="ACME").route == "acme-alpha"
    assert t.choose(UK, account="other", sender="ACME").route is None
    assert t.choose(UK, account="acme", sender="+15551234567").route == "numeric"
    reasons = t.choose(UK, account="other", sender="ACME").reasons
    assert "route acme-alpha: skipped, account other not in acme" in reasons
    assert "route numeric: skipped, sender is alphanumeric, not numeric" in reasons


def test_failover_to_the_next_tier_when_the_first_is_unavailable() -> None:
    t = table(Route.build(name="r", upstreams=["a", "b"]))
    assert t.choose(UK, available=lambda n: n != "a").candidates == ("b",)
    choice = t.choose(UK, available=lambda n: False)
    assert choice.upstream is None and choice.route == "r"
    assert choice.reasons[-1] == "no upstream of this route is available: retry later"


def test_weighted_sharing_follows_the_draw_and_keeps_the_others_as_failover() -> None:
    t = table(Route.build(name="r", upstreams=["a:3, b:1", "c"]))
    assert t.choose(UK, draw=0.0).candidates == ("a", "b", "c")
    assert t.choose(UK, draw=0.74).candidates == ("a", "b", "c")
    assert t.choose(UK, draw=0.75).candidates == ("b", "a", "c")
    # a member down: the other takes everything
    assert t.choose(UK, draw=0.1, available=lambda n: n != "a").candidates == ("b", "c")


@given(st.lists(st.integers(1, 9), min_size=2, max_size=4))
def test_shares_are_proportional_to_weights(weights: list[int]) -> None:
    names = [f"u{i}" for i in range(len(weights))]
    tier = ", ".join(f"{n}:{w}" for n, w in zip(names, weights, strict=True))
    t = RouteTable(routes=(Route.build(name="r", upstreams=[tier]),), upstreams=tuple(names))
    total = sum(weights)
    steps = total * 40
    counts = Counter(t.choose(UK, draw=(i + 0.5) / steps).upstream for i in range(steps))
    for name, weight in zip(names, weights, strict=True):
        assert counts[name] == weight * 40


def test_unknown_upstream_and_duplicate_names_are_refused() -> None:
    with pytest.raises(RouteError, match="not configured"):
        table(Route.build(name="r", upstreams=["zz"]))
    with pytest.raises(RouteError, match="twice"):
        table(Route.build(name="r", upstreams=["a"]), Route.build(name="r", upstreams=["b"]))
    with pytest.raises(RouteError, match="digits"):
        Route.build(name="r", upstreams=["a"], prefixes=["44x"])
    with pytest.raises(RouteError, match="no upstream"):
        Route.build(name="r", upstreams=[])


def test_country_of_an_unparseable_destination_is_unknown() -> None:
    t = table(Route.build(name="gb", countries=["gb"], upstreams=["b"]))
    choice = t.choose("+999123")
    assert choice.route is None
    assert "country unknown not in GB" in choice.reasons[0]
