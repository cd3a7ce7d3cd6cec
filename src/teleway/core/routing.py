"""Which upstream SMSC carries an SMS: the route table.

A route table is an ordered list of :class:`Route`. The first route whose conditions all hold
for a message decides (like a firewall rule list: put specific routes first). Conditions, each
optional (an empty one matches everything):

* ``prefixes``: the destination's E.164 digits start with one of them (``"4477"``);
* ``countries``: the destination's region (ISO 3166 alpha-2, from libphonenumber) is one of them;
* ``accounts``: the sending account's name is one of them;
* ``sender``: the sender id is ``numeric`` (a phone number) or ``alphanumeric`` (``"ACME"``).

A route names its upstreams as *tiers*, in failover order. A tier is one upstream or several
sharing the load by weight: ``("a:3, b:1", "c")`` sends three messages to ``a`` for one to
``b``; when both are unavailable, everything goes to ``c``. An upstream is *available* when
the caller says so (bound and not failing). When no route matches, or the table is empty,
every upstream is tried in its configured order (the default route).

Pure: no clock, no randomness of its own (the caller passes a draw in [0, 1)).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from teleway.core.numbers import region_of

__all__ = [
    "Choice",
    "Route",
    "RouteError",
    "RouteTable",
    "SenderType",
    "Tier",
    "parse_tier",
    "sender_type_of",
]

MAX_WEIGHT = 1_000_000  # weights are small integers; a bound keeps typos visible


class RouteError(ValueError):
    """A route that cannot work: unknown upstream, bad weight, empty tier."""


class SenderType(StrEnum):
    ANY = "any"
    NUMERIC = "numeric"  # an international number: TON 1 on the wire
    ALPHANUMERIC = "alphanumeric"  # a name such as "ACME": TON 5 on the wire


def sender_type_of(sender: str | None) -> SenderType | None:
    """NUMERIC for "+4915112345678" or "4915112345678", ALPHANUMERIC for "ACME"; None when
    there is no sender id (the upstream's default source address is used)."""
    if not sender:
        return None
    return SenderType.NUMERIC if sender.lstrip("+").isdigit() else SenderType.ALPHANUMERIC


@dataclass(frozen=True, kw_only=True)
class Tier:
    """Upstreams that share the load by weight (weights > 0)."""

    members: tuple[tuple[str, int], ...]

    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.members)

    def __str__(self) -> str:
        return ", ".join(f"{n}:{w}" if w != 1 else n for n, w in self.members)


def parse_tier(text: str) -> Tier:
    """``"a"``, ``"a:3, b:1"`` -> Tier. Raises RouteError on an empty name, a weight that is
    not a positive integer, or a name given twice."""
    members: list[tuple[str, int]] = []
    for item in text.split(","):
        name, sep, weight_text = item.strip().partition(":")
        name = name.strip()
        if not name:
            raise RouteError(f"empty upstream name in {text!r}")
        weight = 1
        if sep:
            try:
                weight = int(weight_text.strip())
            except ValueError:
                raise RouteError(f"weight of {name!r} must be an integer: {text!r}") from None
            if not 0 < weight <= MAX_WEIGHT:
                raise RouteError(f"weight of {name!r} must be 1..{MAX_WEIGHT}: {text!r}")
        if any(name == seen for seen, _ in members):
            raise RouteError(f"{name!r} appears twice in {text!r}")
        members.append((name, weight))
    return Tier(members=tuple(members))


@dataclass(frozen=True, kw_only=True)
class Route:
    name: str
    tiers: tuple[Tier, ...]
    prefixes: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    sender: SenderType = SenderType.ANY

    @classmethod
    def build(
        cls,
        *,
        name: str,
        upstreams: Sequence[str],
        prefixes: Sequence[str] = (),
        countries: Sequence[str] = (),
        accounts: Sequence[str] = (),
        sender: SenderType | str = SenderType.ANY,
    ) -> Route:
        """A route from configuration values; raises RouteError on a malformed one."""
        if not upstreams:
            raise RouteError(f"route {name!r} names no upstream")
        for prefix in prefixes:
            if not prefix.lstrip("+").isdigit():
                raise RouteError(f"route {name!r}: prefix {prefix!r} must be digits")
        return cls(
            name=name,
            tiers=tuple(parse_tier(t) for t in upstreams),
            prefixes=tuple(p.lstrip("+") for p in prefixes),
            countries=tuple(c.upper() for c in countries),
            accounts=tuple(accounts),
            sender=SenderType(sender),
        )

    def upstream_names(self) -> list[str]:
        return [name for tier in self.tiers for name in tier.names()]

    def mismatch(
        self, digits: str, region: str | None, account: str | None, sender: SenderType | None
    ) -> str | None:
        """Why this route does not apply (None: it applies)."""
        if self.prefixes and not any(digits.startswith(p) for p in self.prefixes):
            return f"destination does not start with {' or '.join(self.prefixes)}"
        if self.countries and region not in self.countries:
            return f"country {region or 'unknown'} not in {', '.join(self.countries)}"
        if self.accounts and account not in self.accounts:
            return f"account {account or '-'} not in {', '.join(self.accounts)}"
        if self.sender is not SenderType.ANY and sender is not self.sender:
            return f"sender is {sender or 'none'}, not {self.sender}"
        return None


@dataclass(frozen=True, kw_only=True)
class Choice:
    """The upstreams to try in order (first: the one to use now), and why."""

    route: str | None  # None: the default route
    candidates: tuple[str, ...]
    reasons: tuple[str, ...] = field(default=())

    @property
    def upstream(self) -> str | None:
        return self.candidates[0] if self.candidates else None


@dataclass(frozen=True, kw_only=True)
class RouteTable:
    routes: tuple[Route, ...]
    upstreams: tuple[str, ...]  # every configured upstream, in configured order

    def __post_init__(self) -> None:
        known = set(self.upstreams)
        names: set[str] = set()
        for route in self.routes:
            if route.name in names:
                raise RouteError(f"route name {route.name!r} is used twice")
            names.add(route.name)
            for name in route.upstream_names():
                if name not in known:
                    raise RouteError(
                        f"route {route.name!r} names upstream {name!r}, which is not configured"
                        f" (known: {', '.join(self.upstreams) or 'none'})"
                    )

    def choose(
        self,
        destination: str,
        *,
        account: str | None = None,
        sender: str | None = None,
        available: Callable[[str], bool] = lambda _name: True,
        draw: float = 0.0,
    ) -> Choice:
        """Where an SMS to `destination` (E.164, "+" optional) goes.

        `draw` in [0, 1) picks among a tier's available members by weight; the other
        available upstreams of the route follow in failover order. An empty `candidates`
        means no upstream of the deciding route is available now."""
        digits = destination.lstrip("+")
        # libphonenumber costs ~80 us a number: only when a route looks at countries
        needs_region = digits.isdigit() and any(r.countries for r in self.routes)
        region = _region(digits) if needs_region else None
        kind = sender_type_of(sender)
        reasons: list[str] = []
        for route in self.routes:
            why_not = route.mismatch(digits, region, account, kind)
            if why_not is not None:
                reasons.append(f"route {route.name}: skipped, {why_not}")
                continue
            reasons.append(f"route {route.name}: matches ({_conditions(route)})")
            candidates = _order(route.tiers, available, draw, reasons)
            return Choice(route=route.name, candidates=candidates, reasons=tuple(reasons))
        reasons.append("no route matched: every upstream in configured order (default route)")
        tiers = tuple(Tier(members=((name, 1),)) for name in self.upstreams)
        candidates = _order(tiers, available, draw, reasons)
        return Choice(route=None, candidates=candidates, reasons=tuple(reasons))


@functools.lru_cache(maxsize=4096)
def _region(digits: str) -> str | None:
    return region_of("+" + digits)


def _conditions(route: Route) -> str:
    parts = []
    if route.prefixes:
        parts.append("prefix " + "|".join(route.prefixes))
    if route.countries:
        parts.append("country " + "|".join(route.countries))
    if route.accounts:
        parts.append("account " + "|".join(route.accounts))
    if route.sender is not SenderType.ANY:
        parts.append(f"sender {route.sender}")
    return ", ".join(parts) or "matches everything"


def _order(
    tiers: Sequence[Tier], available: Callable[[str], bool], draw: float, reasons: list[str]
) -> tuple[str, ...]:
    ordered: list[str] = []
    for index, tier in enumerate(tiers, start=1):
        up = [(n, w) for n, w in tier.members if available(n)]
        down = [n for n, _ in tier.members if not available(n)]
        if down:
            reasons.append(f"tier {index} ({tier}): unavailable {', '.join(down)}")
        if not up:
            continue
        if len(up) > 1:
            total = sum(w for _, w in up)
            point = min(max(draw, 0.0), 0.999999999) * total
            first = len(up) - 1
            for i, (_, weight) in enumerate(up):
                if point < weight:
                    first = i
                    break
                point -= weight
            up = up[first:] + up[:first]
            shares = ", ".join(f"{n} {w}/{total}" for n, w in sorted(up, key=lambda m: m[0]))
            reasons.append(f"tier {index}: load shared ({shares}), drew {up[0][0]}")
        elif not ordered:
            reasons.append(f"tier {index}: {up[0][0]} available")
        ordered.extend(n for n, _ in up)
    if ordered:
        reasons.append(
            f"use {ordered[0]}" + (f", then {', '.join(ordered[1:])}" if ordered[1:] else "")
        )
    else:
        reasons.append("no upstream of this route is available: retry later")
    return tuple(ordered)
