"""MAIL FROM / RCPT TO addresses: the fast path for plain `<local@domain>` gives exactly what
aiosmtpd's own parser (the e-mail header parser) gives, and leaves everything else to it."""

from __future__ import annotations

from types import SimpleNamespace

from aiosmtpd.smtp import SMTP
from hypothesis import given
from hypothesis import strategies as st

from teleway.ingress.smtp import plain_address


def full_parser(arg: str) -> tuple[str | None, str | None]:
    return SMTP._getaddr(SimpleNamespace(local_part_limit=0), arg)  # type: ignore[arg-type]


_atom = st.text(alphabet="abcXYZ019!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=6)
_odd = st.text(alphabet='abz.@<>()"[]\\ \t=?,;:é\r\n', max_size=8)
_part = st.lists(st.one_of(_atom, _odd), min_size=1, max_size=4).map(".".join)
_rest = st.one_of(
    st.just(""),
    st.sampled_from([" SIZE=1000", "  BODY=8BITMIME", "\tX", "(c) SIZE=1", " (c)", "x", " ", "\n"]),
    st.text(alphabet=" \t()aB=\r\n", max_size=6),
)


@given(_part, _part, _rest)
def test_fast_path_agrees_with_the_full_parser(local: str, domain: str, rest: str) -> None:
    arg = f"<{local}@{domain}>{rest}"
    fast = plain_address(arg)
    if fast is not None:
        assert fast == full_parser(arg)


@given(st.text(max_size=30))
def test_any_argument_is_either_left_to_the_full_parser_or_read_the_same(arg: str) -> None:
    fast = plain_address(arg)
    if fast is not None:
        assert fast == full_parser(arg)


def test_plain_addresses_take_the_fast_path() -> None:
    for arg, expected in [
        ("<+17816170001@teleway.test>", ("+17816170001@teleway.test", "")),
        (
            "<load@bench.test> SIZE=1024 BODY=8BITMIME",
            ("load@bench.test", "SIZE=1024 BODY=8BITMIME"),
        ),
        ("<a.b-c_d@x.y.z>", ("a.b-c_d@x.y.z", "")),
        ("<A@B>x", ("A@B", "x")),
    ]:
        assert plain_address(arg) == expected == full_parser(arg)


def test_everything_else_is_left_to_the_full_parser() -> None:
    for arg in [
        "<>",
        '<"quoted local"@example.com>',
        "<user@[192.0.2.1]>",
        "<@route.example:user@example.com>",
        "<user@example.com> (comment) SIZE=1",
        "<=?utf-8?q?x?=@example.com>",
        "user@example.com",
        "<a..b@example.com>",
        "<é@example.com>",
        "<user@example.com",
    ]:
        assert plain_address(arg) is None, arg
