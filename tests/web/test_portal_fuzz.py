"""Hypothesis throws arbitrary query strings, forms and JSON at the portal's handlers: every
answer is a deliberate one (redirect, page, 4xx with a message), never a 500."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from portal_support import login, portal_world

T = TypeVar("T")

TEXT = st.text(max_size=40)
FILTER_KEYS = ["since", "until", "recipient", "device", "state", "origin", "account", "cursor"]
SETTING_KEYS = [
    "sms_template", "long_sms_policy", "max_sms_parts", "push_mode", "push_fallback_seconds",
    "notify_email", "notify_on", "notify_dsn", "webhook_url", "webhook_secret", "flags",
    "sender_id", "default_country", "validity_seconds", "max_recipients", "smpp_default_device",
    "allowed_senders",
]  # fmt: skip
ACTIONS = [
    "sender-add", "sender-remove", "network-add", "network-remove", "smpp-add", "smpp-update",
    "smpp-remove", "user-add", "enable", "nonsense",
]  # fmt: skip
ACTION_FIELDS = [
    "pattern", "cidr", "system_id", "password", "system_type", "max_binds", "throughput",
    "enabled", "username", "email",
]  # fmt: skip
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


class Loop:
    """An event loop in a thread, so synchronous hypothesis tests can drive the async app."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def test_fuzzed_requests_never_crash(tmp_path: Path) -> None:
    loop = Loop()
    world_cm = portal_world(tmp_path)
    world = loop.run(world_cm.__aenter__())
    user, operator = world.client(), world.client()
    try:
        user_csrf = loop.run(login(user, "alice"))
        op_csrf = loop.run(login(operator, "olga"))

        @SETTINGS
        @given(st.dictionaries(st.sampled_from(FILTER_KEYS), TEXT, max_size=5))
        def history_queries(params: dict[str, str]) -> None:
            query = urlencode(params)
            for path in ("/messages", "/messages.csv"):
                r = loop.run(user.get(f"{path}?{query}"))
                assert r.status_code in (200, 400), (path, params, r.status_code)

        @SETTINGS
        @given(st.dictionaries(st.sampled_from(SETTING_KEYS), TEXT, max_size=6))
        def settings_forms(form: dict[str, str]) -> None:
            r = loop.run(user.post("/settings", data={**form, "csrf": user_csrf}))
            assert r.status_code in (303, 400), (form, r.status_code, r.text[-500:])
            r = loop.run(
                operator.post("/admin/accounts/acme/settings", data={**form, "csrf": op_csrf})
            )
            assert r.status_code in (303, 400), (form, r.status_code)

        @SETTINGS
        @given(JSON)
        def preview_bodies(body: Any) -> None:
            r = loop.run(
                user.post("/settings/preview", json=body, headers={"X-CSRF-Token": user_csrf})
            )
            assert r.status_code in (200, 400), (body, r.status_code)

        @SETTINGS
        @given(
            st.sampled_from(ACTIONS),
            st.dictionaries(st.sampled_from(ACTION_FIELDS), TEXT, max_size=5),
        )
        def operator_actions(action: str, form: dict[str, str]) -> None:
            r = loop.run(
                operator.post(f"/admin/accounts/acme/{action}", data={**form, "csrf": op_csrf})
            )
            assert r.status_code in (303, 400, 404, 409), (action, form, r.status_code)

        @SETTINGS
        @given(st.dictionaries(st.sampled_from(["number", "device", "subject", "text"]), TEXT))
        def sends(form: dict[str, str]) -> None:
            r = loop.run(user.post("/send", data={**form, "csrf": user_csrf}))
            assert r.status_code in (303, 400), (form, r.status_code)

        history_queries()
        settings_forms()
        preview_bodies()
        operator_actions()
        sends()
    finally:
        loop.run(user.aclose())
        loop.run(operator.aclose())
        loop.run(world_cm.__aexit__(None, None, None))
        loop.close()
