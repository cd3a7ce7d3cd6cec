"""API key authentication and per-key rate limits.

A request presents its key as `Authorization: Bearer <key>` (RFC 6750 2.1) or `X-API-Key: <key>`.
Answers:

- no key, malformed or unknown key, revoked key: 401 with `WWW-Authenticate: Bearer`
  (RFC 6750 3); the key itself is never logged, only its first characters;
- more than `[security] auth_fail_limit` failed attempts from one client address within
  `auth_fail_window_seconds`: 429 until the window has passed, before any key is looked up
  (the same rule as SMTP AUTH, SMPP binds and the portal; 256-bit keys cannot be guessed, but
  a misconfigured client must not hammer the database either);
- a key over its rate (token bucket: `rate_limit` per second, `rate_burst` at once): 429 with
  `Retry-After` (RFC 9110 10.2.3, whole seconds, at least 1).

Buckets live in this process: with several nodes behind a load balancer each node enforces the
limit on its share (documented in docs/api.md).
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from starlette.requests import Request

from teleway.core.model import Account
from teleway.core.ratelimit import SlidingWindow, TokenBucket
from teleway.web.api.problems import RATE_LIMITED, UNAUTHENTICATED, ApiProblem
from teleway.web.context import WebContext

logger = logging.getLogger("teleway.web.api")
L = TypeVar("L")

MAX_BUCKETS = 10_000  # keys / client addresses tracked at once (least recently used dropped)
WWW_AUTHENTICATE = 'Bearer realm="teleway"'


@dataclass(frozen=True, kw_only=True)
class Caller:
    """Who is calling: the key's account (freshly loaded) and the key's id and name."""

    account: Account
    key_id: int
    key_name: str

    @property
    def submitter(self) -> str:
        return f"api:{self.key_name}"


class _Buckets(Generic[L]):
    def __init__(self, make: Callable[[float], L]) -> None:
        self._make = make
        self._buckets: OrderedDict[object, L] = OrderedDict()

    def get(self, key: object, now: float) -> L:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = self._make(now)
            if len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket


def _bucket_maker(rate: float) -> Callable[[float], TokenBucket]:
    def make(now: float) -> TokenBucket:
        return TokenBucket(rate, max(1.0, 2 * rate), now=now)

    return make


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return ""
    key = request.headers.get("x-api-key")
    return None if key is None else key.strip()


class ApiAuth:
    def __init__(self, ctx: WebContext, *, monotonic: Callable[[], float] = time.monotonic):
        self._ctx = ctx
        self._monotonic = monotonic
        api = ctx.api
        self._default = _Buckets(
            lambda now: TokenBucket(api.rate_limit, float(api.rate_burst), now=now)
        )
        self._custom: dict[float, _Buckets[TokenBucket]] = {}
        self._failures = _Buckets(
            lambda now: SlidingWindow(api.auth_fail_limit, api.auth_fail_window_seconds)
        )

    def _limited(self, bucket: TokenBucket, now: float, detail: str) -> ApiProblem | None:
        if bucket.take(now):
            return None
        wait = max(1, math.ceil(bucket.wait_time(now)))
        return ApiProblem(
            RATE_LIMITED, detail, headers={"Retry-After": str(wait)}, retry_after=wait
        )

    async def caller(self, request: Request) -> Caller:
        """The authenticated caller, or raise ApiProblem (401 / 429)."""
        now = self._monotonic()
        client = request.client.host if request.client else "-"
        failures = self._failures.get(client, now)
        wait = failures.delay(now)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise ApiProblem(
                RATE_LIMITED,
                "too many failed authentications from this address; wait and check the key",
                headers={"Retry-After": str(seconds)},
                retry_after=seconds,
            )
        secret = presented_key(request)
        if not secret:
            self._fail(failures, now, client, "no API key" if secret is None else "bad scheme")
            raise ApiProblem(
                UNAUTHENTICATED,
                "send the key as `Authorization: Bearer <key>` or `X-API-Key: <key>`",
                headers={"WWW-Authenticate": WWW_AUTHENTICATE},
            )
        key = await self._ctx.api_keys.authenticate(secret, now=self._ctx.clock.now())
        account = None if key is None else await self._ctx.directory.get_account(key.account_id)
        if key is None or account is None:
            self._fail(failures, now, client, f"unknown or revoked key {secret[:11]}…")
            raise ApiProblem(
                UNAUTHENTICATED,
                "the API key is unknown or revoked",
                headers={"WWW-Authenticate": f'{WWW_AUTHENTICATE}, error="invalid_token"'},
            )
        if key.rate_limit is None:
            bucket = self._default.get(key.id, now)
        else:
            group = self._custom.get(key.rate_limit)
            if group is None:
                group = self._custom[key.rate_limit] = _Buckets(_bucket_maker(key.rate_limit))
            bucket = group.get(key.id, now)
        problem = self._limited(bucket, now, f"the key {key.prefix}… is over its request rate")
        if problem is not None:
            raise problem
        return Caller(account=account, key_id=key.id, key_name=key.name)

    def _fail(self, failures: SlidingWindow, now: float, client: str, why: str) -> None:
        failures.record(now)
        logger.info("API authentication failed from %s: %s", client, why)
