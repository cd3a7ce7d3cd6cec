"""The long-SMS check at DATA: the quick bound on the number of parts never changes the answer
that planning every part (`plan_segments`) gives, for any policy, limit and alphabet."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from teleway.core.model import Account, LongSmsPolicy, Settings
from teleway.ingress.smtp import _long_text_problem, _most_parts
from teleway.proto.sms.segments import plan_segments

# GSM 03.38 basic and extension characters (the escape pairs), ASCII that GSM lacks, UCS-2
# only, and astral characters (surrogate pairs), so the cut points hit every case
_PIECE = st.text(
    alphabet=st.sampled_from(
        list("abc 01\n\r@£$`\t\x01") + list("{}[]~^|€\\\x0c") + list("éПж日") + ["🎉"]
    ),
    min_size=1,
    max_size=40,
)
_TEXT = st.builds(
    lambda piece, times, tail: piece * times + tail, _PIECE, st.integers(1, 120), _PIECE
)


def planned_problem(account: Account, text: str) -> str:
    """The answer with every part planned (the check as it was before the bound)."""
    settings = account.settings
    if len(text) <= 70 and len(text.encode("utf-16-le")) <= 140:
        return ""
    needed = plan_segments(text, max_parts=255).total_parts
    if settings.long_sms_policy is LongSmsPolicy.REJECT and needed > 1:
        return f"550 5.3.4 the text needs {needed} SMS and the account allows only one"
    if settings.long_sms_policy is LongSmsPolicy.CONCATENATE and needed > settings.max_sms_parts:
        return (
            f"550 5.3.4 the text needs {needed} SMS parts and the account allows"
            f" {settings.max_sms_parts}; shorten the message"
        )
    return ""


@given(_TEXT)
def test_the_bound_is_at_most_one_above_the_plan(text: str) -> None:
    needed = plan_segments(text, max_parts=255).total_parts
    assert needed <= _most_parts(text) <= needed + 1


@given(_TEXT, st.sampled_from(list(LongSmsPolicy)), st.integers(min_value=1, max_value=15))
def test_same_answer_as_planning_every_part(
    text: str, policy: LongSmsPolicy, max_parts: int
) -> None:
    account = Account(
        id=1,
        name="a",
        settings=Settings(long_sms_policy=policy, max_sms_parts=max_parts, sms_template="{body}"),
    )
    assert _long_text_problem(account, "", text, "a@b.test") == planned_problem(account, text)


def test_exact_part_counts_in_the_reply() -> None:
    account = Account(id=1, name="a", settings=Settings(max_sms_parts=2, sms_template="{body}"))
    # 153 + 152 septets: the bound says 3, the plan says 2 (no escape at the cut): accepted
    text = "a" * 305
    assert _most_parts(text) == 3
    assert _long_text_problem(account, "", text, "a@b.test") == ""
    reply = _long_text_problem(account, "", "a" * 307, "a@b.test")
    assert reply.startswith("550 5.3.4 the text needs 3 SMS parts")
