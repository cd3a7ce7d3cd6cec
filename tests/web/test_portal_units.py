"""Portal building blocks without HTTP: SMS preview, SVG charts, login throttle, redirect
targets, history filters, and the session store's expiry rules (real SQLite)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from teleway.core.model import DeliveryState, Device, LongSmsPolicy, Role
from teleway.proto.sms.segments import plan_segments
from teleway.store import tables
from teleway.store.directory import Directory
from teleway.store.web_sessions import WebSessions, token_id
from teleway.web.portal.auth import LoginThrottle, safe_next
from teleway.web.portal.charts import nice_ceiling, stacked_bars
from teleway.web.portal.messages import parse_filters
from teleway.web.portal.preview import preview

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


# --- preview ----------------------------------------------------------------------------------


def test_preview_applies_the_template_and_counts_parts() -> None:
    p = preview(template="{subject}: {body}", subject="Alarm", body="Door open")
    assert p.text == "Alarm: Door open"
    assert (p.encoding, p.parts, p.parts_needed, p.characters) == ("GSM 7-bit", 1, 1, 16)
    assert p.verdict == "Fits in one SMS."
    long = preview(template="{body}", subject="s", body="é" * 10 + "x" * 300)
    assert long.parts_needed == plan_segments("é" * 10 + "x" * 300).total_parts == 3
    assert long.units_per_part == (153, 153, 4)
    assert "3 concatenated parts" in long.verdict
    ucs = preview(template="{body}", subject="s", body="Grüße 😀")
    assert ucs.encoding.startswith("UCS-2")


def test_preview_policies_and_limits() -> None:
    body = "y" * 400
    truncated = preview(template="{body}", subject="s", body=body, policy=LongSmsPolicy.TRUNCATE)
    assert truncated.parts == 1 and truncated.parts_needed == 3
    assert truncated.text == "y" * 160
    rejected = preview(template="{body}", subject="s", body=body, policy=LongSmsPolicy.REJECT)
    assert rejected.parts == 0 and "refused" in rejected.verdict
    capped = preview(template="{body}", subject="s", body=body, max_parts=2)
    assert capped.parts == 0 and "more than the 2 allowed" in capped.verdict
    ucs_truncated = preview(
        template="{body}", subject="s", body="ж" * 100, policy=LongSmsPolicy.TRUNCATE
    )
    assert ucs_truncated.text == "ж" * 70


def test_preview_reports_template_problems_and_falls_back() -> None:
    p = preview(template="{nope} {body}", subject="S", body="B")
    assert p.problems and "unknown placeholder {nope}" in p.problems[0]
    assert p.text == "S,B"  # the default template
    assert preview(template="{", subject="S", body="B").problems


@given(template=st.text(max_size=60), subject=st.text(max_size=80), body=st.text(max_size=400))
def test_preview_never_fails_on_any_input(template: str, subject: str, body: str) -> None:
    p = preview(template=template, subject=subject, body=body)
    assert p.parts_needed >= 1
    assert p.parts <= p.parts_needed


# --- charts -----------------------------------------------------------------------------------


def test_nice_ceiling() -> None:
    assert [nice_ceiling(v) for v in (0, 1, 3, 7, 11, 20, 21, 480, 501)] == [
        1,
        1,
        5,
        10,
        20,
        20,
        50,
        500,
        1000,
    ]


def test_stacked_bars_is_valid_svg_with_escaped_names_and_proportional_bars() -> None:
    buckets = [T0 + timedelta(hours=i) for i in range(3)]
    svg = stacked_bars(
        "Traffic <&>", buckets, {"sms": [2, 0, 4], "<script>": [2, 0, 0], "fax": [0, 0, 0]}
    )
    root = ET.fromstring(svg)  # well-formed XML
    assert root.tag.endswith("svg")
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    rects = root.findall("{http://www.w3.org/2000/svg}rect")
    heights = [float(r.get("height", "0")) for r in rects]
    assert len(rects) == 3  # empty values and the all-zero series draw nothing
    # bucket 0 (2 + 2) and bucket 2 (4) reach the same height: the top of a 0..5 axis * 4/5
    assert abs((heights[0] + heights[1]) - heights[2]) < 0.2
    empty = stacked_bars("Nothing", buckets, {})
    assert "no traffic in this period" in empty


# --- login throttle and redirects -------------------------------------------------------------


def test_login_throttle_counts_failures_per_address_in_a_window() -> None:
    throttle = LoginThrottle(limit=3, window=60, max_clients=2)
    for i in range(3):
        assert throttle.retry_after("a", 100.0 + i) == 0
        throttle.failed("a", 100.0 + i)
    assert throttle.retry_after("a", 103.0) == 57.0
    assert throttle.retry_after("b", 103.0) == 0
    assert throttle.retry_after("a", 160.0) == 0  # the first failure left the window
    throttle.succeeded("a")
    assert throttle.retry_after("a", 103.0) == 0
    for ip in ("x", "y", "z"):
        throttle.failed(ip, 1.0)
    assert len(throttle._clients) == 2  # bounded memory: the oldest address is forgotten


def test_safe_next_keeps_local_paths_only() -> None:
    assert safe_next("/messages?state=queued") == "/messages?state=queued"
    for bad in ("https://evil.example", "//evil.example", "/\\evil", "javascript:alert(1)", ""):
        assert safe_next(bad) == "/"


# --- filters ----------------------------------------------------------------------------------


def test_parse_filters() -> None:
    f = parse_filters(
        {"since": "2026-11-01", "until": "2026-11-02", "device": "fax", "state": "delivered"}, 7
    )
    assert not f.errors
    assert f.query.account_id == 7
    assert f.query.since == datetime(2026, 11, 1, tzinfo=UTC)
    assert f.query.until == datetime(2026, 11, 3, tzinfo=UTC)  # the whole 'until' day
    assert (f.query.device, f.query.state) == (Device.FAX, DeliveryState.DELIVERED)
    bad = parse_filters({"since": "11/01", "origin": "pigeon", "recipient": "abc"}, None)
    assert set(bad.errors) == {"since", "origin", "recipient"}


@given(
    st.dictionaries(
        st.sampled_from(
            ["since", "until", "recipient", "device", "state", "origin", "account", "other"]
        ),
        st.text(max_size=80),
    )
)
def test_parse_filters_never_raises(params: dict[str, str]) -> None:
    result = parse_filters(params, None)
    assert all(isinstance(v, str) for v in result.errors.values())


# --- sessions ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("cheap_hashing")
async def test_sessions_expire_idle_end_and_never_store_the_token(
    engine: AsyncEngine, directory: Directory
) -> None:
    """On SQLite and PostgreSQL (the `engine` fixture of tests/db_fixtures.py)."""
    await directory.create_account("acme", actor="t")
    user = await directory.add_user("alice", actor="t", account="acme", password="long enough pw")
    op = await directory.add_user("olga", actor="t", role=Role.OPERATOR, password="long enough pw")
    sessions = WebSessions(engine, lifetime=timedelta(hours=2), idle=timedelta(minutes=30))
    created = await sessions.create(user, now=T0, ip="192.0.2.1")
    assert created.session.id == token_id(created.token) != created.token
    assert re.fullmatch(r"[0-9a-f]{64}", created.session.id)
    async with engine.connect() as conn:
        rows = (await conn.execute(select(tables.web_sessions))).all()
    assert rows and all(created.token not in map(str, row) for row in rows)
    found = await sessions.resolve(created.token, now=T0 + timedelta(minutes=29))
    assert found is not None and found.user.username == "alice"
    assert found.csrf == created.session.csrf
    # each request slides the idle limit; the absolute lifetime still ends it
    for minutes in (55, 80, 105):
        assert await sessions.resolve(created.token, now=T0 + timedelta(minutes=minutes))
    assert await sessions.resolve(created.token, now=T0 + timedelta(minutes=121)) is None
    # idle too long
    idle = await sessions.create(user, now=T0, ip=None)
    assert await sessions.resolve(idle.token, now=T0 + timedelta(minutes=31)) is None
    # a disabled user's sessions stop working at once
    live = await sessions.create(user, now=T0, ip=None)
    await directory.set_user_enabled("alice", False, actor="t")
    assert await sessions.resolve(live.token, now=T0) is None
    await directory.set_user_enabled("alice", True, actor="t")
    assert await sessions.resolve(live.token, now=T0) is not None
    # a disabled account's users too
    await directory.set_account_enabled("acme", False, actor="t")
    assert await sessions.resolve(live.token, now=T0) is None
    await directory.set_account_enabled("acme", True, actor="t")
    # end_all keeps the given one; operators (no account) resolve too
    other = await sessions.create(user, now=T0, ip=None)
    assert await sessions.end_all(user.id, keep=live.session.id) >= 1
    assert await sessions.resolve(other.token, now=T0) is None
    assert await sessions.resolve(live.token, now=T0) is not None
    mine = await sessions.create(op, now=T0, ip="::1")
    resolved = await sessions.resolve(mine.token, now=T0)
    assert resolved is not None and resolved.user.role is Role.OPERATOR
    await sessions.end(mine.session.id)
    assert await sessions.resolve(mine.token, now=T0) is None
    assert await sessions.resolve("not-a-token", now=T0) is None
    assert await sessions.resolve("x" * 1000, now=T0) is None
    assert await sessions.purge(now=T0 + timedelta(days=1)) >= 1
    assert await sessions.count(user.id) == 0


def test_route_rows_from_a_route_table() -> None:
    from teleway.core.routing import Route, RouteTable
    from teleway.web.portal.operators import route_rows

    table = RouteTable(
        routes=(Route.build(name="uk", upstreams=["eu-1:3, eu-2", "backup"], prefixes=["+44"]),),
        upstreams=("eu-1", "eu-2", "backup"),
    )
    rows = route_rows(table)
    assert rows[0]["route"] == "uk" and rows[0]["prefixes"] == "+44"
    assert rows[0]["upstreams (failover →)"] == "eu-1:3, eu-2 → backup"
    assert rows[-1] == {"route": "(default)", "upstreams (failover →)": "eu-1, eu-2, backup"}
    assert route_rows([{"a": 1}]) == [{"a": "1"}]


def test_csv_cells_cannot_become_spreadsheet_formulas() -> None:
    from teleway.web.portal.messages import spreadsheet_safe

    assert spreadsheet_safe("+14155550123") == "+14155550123"
    assert spreadsheet_safe("-12.5") == "-12.5"
    assert spreadsheet_safe("plain text") == "plain text"
    for attack in ('=HYPERLINK("http://evil.example")', "@SUM(A1)", "+cmd|' /C calc'!A0",
                   "-2+3", "\t=1", "\r=1"):  # fmt: skip
        assert spreadsheet_safe(attack) == "'" + attack
