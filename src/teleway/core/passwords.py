"""Stored secrets: argon2id hashes for portal users and SMPP credentials, and the password policy.

Hashing uses argon2-cffi with the RFC 9106 "low memory" profile by default (argon2id, t=3,
m=64 MiB, p=4, 16-byte salt, 32-byte tag). Hashing is deliberately slow; tests lower the cost with
`configure(time_cost=1, memory_cost=8, parallelism=1)` and restore it with `reset()`.

Only hashes are stored or exported. A hash made with other parameters still verifies
(the parameters travel inside the encoded hash); `needs_rehash()` tells the caller to store a
fresh one after a successful login.

Two policies:

* portal users (`check_password_strength`): at least `MIN_PASSWORD_LENGTH` characters, not the
  username, not one of the most common passwords;
* SMPP credentials (`check_smpp_password`): SMPP v3.4 section 5.2.2 gives the bind `password`
  field 9 octets including the terminating NUL, so an SMPP password has at most 8 printable ASCII
  characters. Such a password is short by protocol, not by choice: what protects it is the bind
  rate limit and lock-out in the SMPP ingress (and the account's source networks), not its length.
"""

from __future__ import annotations

from argon2 import Parameters, PasswordHasher, Type, extract_parameters, profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

DEFAULT_PARAMETERS: Parameters = profiles.RFC_9106_LOW_MEMORY
"""Production cost: argon2id, time_cost=3, memory_cost=65536 KiB, parallelism=4."""

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024  # longer inputs are refused so a login form cannot be used to burn CPU
SMPP_PASSWORD_MAX = 8  # SMPP v3.4 5.2.2: password is a C-Octet String of at most 9 octets

# The most common passwords in public breach corpora (lower-cased). Short ones are kept because
# SMPP passwords are at most 8 characters and are checked against this list too.
COMMON_PASSWORDS: frozenset[str] = frozenset(
    {
        "000000",
        "0000000000",
        "1111111111",
        "111111",
        "11111111",
        "112233",
        "121212",
        "123123",
        "123123123",
        "123321",
        "1234",
        "12345",
        "123456",
        "1234567",
        "12345678",
        "123456789",
        "1234567890",
        "12345678910",
        "123456a",
        "123qwe",
        "1q2w3e",
        "1q2w3e4r",
        "1q2w3e4r5t",
        "1qaz2wsx",
        "555555",
        "654321",
        "666666",
        "696969",
        "7777777",
        "87654321",
        "888888",
        "987654321",
        "9876543210",
        "aa123456",
        "abc123",
        "abcd1234",
        "access",
        "admin",
        "admin123",
        "administrator",
        "baseball",
        "changeme",
        "changeme123",
        "charlie",
        "default",
        "dragon",
        "football",
        "freedom",
        "guest",
        "iloveyou",
        "letmein",
        "letmein123",
        "login",
        "master",
        "michael",
        "monkey",
        "mustang",
        "passw0rd",
        "password",
        "password1",
        "password12",
        "password123",
        "password1234",
        "princess",
        "qazwsx",
        "qwerty",
        "qwerty123",
        "qwerty12345",
        "qwertyuiop",
        "secret",
        "secret123",
        "shadow",
        "smpp",
        "smppclient",
        "starwars",
        "sunshine",
        "superman",
        "test",
        "test1234",
        "test12345",
        "testtest",
        "trustno1",
        "welcome",
        "welcome1",
        "welcome123",
        "zaq12wsx",
    }
)

_hasher = PasswordHasher.from_parameters(DEFAULT_PARAMETERS)
_dummy_hash: str | None = None


def configure(
    *,
    time_cost: int | None = None,
    memory_cost: int | None = None,
    parallelism: int | None = None,
) -> None:
    """Change the cost of new hashes (process-wide). Unspecified values keep the defaults.

    Meant for tests (`configure(time_cost=1, memory_cost=8, parallelism=1)`); production keeps
    `DEFAULT_PARAMETERS`. `memory_cost` is in KiB and must be at least 8 * parallelism.
    """
    global _hasher, _dummy_hash
    parallelism = DEFAULT_PARAMETERS.parallelism if parallelism is None else parallelism
    _hasher = PasswordHasher(
        time_cost=DEFAULT_PARAMETERS.time_cost if time_cost is None else time_cost,
        memory_cost=DEFAULT_PARAMETERS.memory_cost if memory_cost is None else memory_cost,
        parallelism=parallelism,
        hash_len=DEFAULT_PARAMETERS.hash_len,
        salt_len=DEFAULT_PARAMETERS.salt_len,
        type=Type.ID,
    )
    _dummy_hash = None


def reset() -> None:
    """Back to the production parameters."""
    global _hasher, _dummy_hash
    _hasher = PasswordHasher.from_parameters(DEFAULT_PARAMETERS)
    _dummy_hash = None


def current_parameters() -> Parameters:
    """The parameters new hashes are made with."""
    return Parameters(
        type=_hasher.type,
        version=19,
        salt_len=_hasher.salt_len,
        hash_len=_hasher.hash_len,
        time_cost=_hasher.time_cost,
        memory_cost=_hasher.memory_cost,
        parallelism=_hasher.parallelism,
    )


def hash_password(password: str) -> str:
    """An argon2id hash in the PHC string format (`$argon2id$v=19$m=...,t=...,p=...$salt$tag`),
    with a fresh random salt."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when `password` matches `password_hash`.

    The tag comparison inside libargon2 is constant-time. A malformed or non-argon2 hash gives
    False, never an exception, so a corrupt row cannot be used to probe the code path.
    """
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def dummy_verify(password: str) -> None:
    """Spend the time of one verification; used when the user does not exist, so that the
    response time does not tell which usernames (or system_ids) are valid."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash("teleway-no-such-user")
    verify_password(_dummy_hash, password)


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with other parameters than the current ones (or is not an
    argon2id hash at all): store a fresh hash after the next successful verification."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True


def is_password_hash(text: str) -> bool:
    """True when `text` is a well-formed argon2id hash (what a provisioning file may carry
    instead of a plaintext password)."""
    if not text.startswith("$argon2id$"):
        return False
    try:
        extract_parameters(text)
    except (InvalidHashError, ValueError):
        return False
    return True


def check_password_strength(password: str, *, username: str) -> list[str]:
    """Problems with a portal user's password; an empty list means acceptable."""
    problems: list[str] = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"must be at least {MIN_PASSWORD_LENGTH} characters long")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"must be at most {MAX_PASSWORD_LENGTH} characters long")
    if any(not char.isprintable() for char in password):
        problems.append("must not contain control characters")
    folded = password.casefold()
    if username and folded == username.casefold():
        problems.append("must not be the username")
    if folded in COMMON_PASSWORDS:
        problems.append("is one of the most common passwords")
    elif len(set(password)) == 1 and password:
        problems.append("must not repeat a single character")
    return problems


def check_smpp_password(password: str, *, system_id: str) -> list[str]:
    """Problems with an SMPP bind password; an empty list means acceptable.

    1 to 8 printable ASCII characters (space allowed), because SMPP v3.4 5.2.2 limits the field
    to 9 octets including the NUL. Not the system_id, not a most-common password.
    """
    problems: list[str] = []
    if not 1 <= len(password) <= SMPP_PASSWORD_MAX:
        problems.append(
            f"must be 1 to {SMPP_PASSWORD_MAX} characters (SMPP v3.4 5.2.2: 9 octets with NUL)"
        )
    if any(not 0x20 <= ord(char) <= 0x7E for char in password):
        problems.append("must be printable ASCII")
    folded = password.casefold()
    if system_id and folded == system_id.casefold():
        problems.append("must not be the system_id")
    if folded in COMMON_PASSWORDS:
        problems.append("is one of the most common passwords")
    return problems
