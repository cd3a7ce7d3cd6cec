from __future__ import annotations

import pytest
from argon2 import profiles
from hypothesis import given, settings
from hypothesis import strategies as st

from teleway.core import passwords

pytestmark = pytest.mark.usefixtures("cheap_hashing")  # tests/db_fixtures.py


def test_hash_is_argon2id_and_verifies() -> None:
    hashed = passwords.hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert passwords.verify_password(hashed, "correct horse battery")
    assert not passwords.verify_password(hashed, "correct horse batterY")
    assert not passwords.verify_password(hashed, "")


def test_each_hash_has_its_own_salt() -> None:
    assert passwords.hash_password("same input") != passwords.hash_password("same input")


@pytest.mark.parametrize(
    "stored",
    ["", "plaintext", "$argon2id$v=19$m=8,t=1,p=1$garbage", "$2b$12$abcdefghijklmnopqrstuv"],
)
def test_malformed_hashes_do_not_verify_and_do_not_raise(stored: str) -> None:
    assert passwords.verify_password(stored, "anything") is False
    assert passwords.needs_rehash(stored) is True
    assert passwords.is_password_hash(stored) is False


def test_is_password_hash_accepts_argon2id_only() -> None:
    assert passwords.is_password_hash(passwords.hash_password("x"))
    argon2i = "$argon2i$v=19$m=8,t=1,p=1$c29tZXNhbHQ$iWh06vD8Fy27wf9npn6FXWiCX4K6pW6Ue1Bnzz07Z8A"
    assert not passwords.is_password_hash(argon2i)


def test_needs_rehash_follows_the_configured_parameters() -> None:
    cheap = passwords.hash_password("a password here")
    assert passwords.needs_rehash(cheap) is False
    passwords.configure(time_cost=2, memory_cost=16, parallelism=1)
    assert passwords.needs_rehash(cheap) is True
    # an old hash still verifies: the parameters travel inside it
    assert passwords.verify_password(cheap, "a password here")


def test_production_defaults_are_rfc9106_low_memory() -> None:
    cheap = passwords.hash_password("x")
    passwords.reset()
    params = passwords.current_parameters()
    assert params == profiles.RFC_9106_LOW_MEMORY
    assert (params.time_cost, params.memory_cost, params.parallelism) == (3, 65536, 4)
    assert passwords.needs_rehash(cheap) is True


def test_dummy_verify_runs() -> None:
    passwords.dummy_verify("whatever")  # must not raise, even twice (cached dummy hash)
    passwords.dummy_verify("whatever")


@settings(max_examples=20)
@given(st.text(max_size=40))
def test_any_text_round_trips(password: str) -> None:
    hashed = passwords.hash_password(password)
    assert passwords.verify_password(hashed, password)
    assert not passwords.verify_password(hashed, password + "x")


# --- policy ---------------------------------------------------------------------------------


def test_a_good_password_passes() -> None:
    assert passwords.check_password_strength("tulip-gravel-9-sky", username="alice") == []


@pytest.mark.parametrize(
    ("password", "expected"),
    [
        ("short1!", "at least 10"),
        ("Alice.Smith", "username"),
        ("PASSWORD123", "common"),
        ("qwertyuiop", "common"),
        ("aaaaaaaaaaaa", "single character"),
        ("tab\there-is-long", "control"),
        ("x" * 1025 + "y", "at most 1024"),
    ],
)
def test_weak_user_passwords_are_refused(password: str, expected: str) -> None:
    problems = passwords.check_password_strength(password, username="alice.smith")
    assert any(expected in problem for problem in problems), problems


def test_smpp_passwords_are_short_by_protocol() -> None:
    assert passwords.check_smpp_password("pw4acme!", system_id="acme") == []
    assert passwords.check_smpp_password("a b", system_id="acme") == []
    for bad, expected in [
        ("", "1 to 8"),
        ("123456789", "1 to 8"),
        ("pässwd", "ASCII"),
        ("tab\tx", "ASCII"),
        ("ACME", "system_id"),
        ("password", "common"),
        ("12345678", "common"),
    ]:
        problems = passwords.check_smpp_password(bad, system_id="acme")
        assert any(expected in problem for problem in problems), (bad, problems)


def test_common_list_is_lower_case() -> None:
    assert all(word == word.lower() for word in passwords.COMMON_PASSWORDS)
