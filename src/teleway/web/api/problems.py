"""RFC 9457 problem details for the REST API.

Every error the API answers is `application/problem+json` with a `type` URI naming the kind of
problem (documented on the API docs page, `/api/v1/docs#problem-<slug>`), a `title` that does
not vary between occurrences, a `detail` about this occurrence and, for invalid requests, an
`errors` list of `{"field": ..., "reason": ...}` (JSON Pointer-like dotted names such as
`recipients[2].device`) so a client can show each reason next to its field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse

PROBLEM_JSON = "application/problem+json"
DOCS_PATH = "/api/v1/docs"


@dataclass(frozen=True, kw_only=True)
class ProblemKind:
    slug: str
    status: int
    title: str

    @property
    def type_uri(self) -> str:
        return f"{DOCS_PATH}#problem-{self.slug}"


# The catalogue (also rendered on the docs page and listed in docs/api.md).
MALFORMED = ProblemKind(slug="malformed-request", status=400, title="The request is malformed")
UNAUTHENTICATED = ProblemKind(
    slug="unauthenticated", status=401, title="A valid API key is required"
)
FORBIDDEN = ProblemKind(slug="forbidden", status=403, title="The account may not do this")
NOT_FOUND = ProblemKind(slug="not-found", status=404, title="No such resource")
METHOD = ProblemKind(slug="method-not-allowed", status=405, title="Method not allowed")
NOT_ACCEPTABLE = ProblemKind(slug="not-acceptable", status=406, title="Not acceptable")
CONFLICT = ProblemKind(slug="conflict", status=409, title="The resource is not in a state for this")
IDEMPOTENCY_BUSY = ProblemKind(
    slug="idempotency-in-progress",
    status=409,
    title="A request with this Idempotency-Key is still being processed",
)
TOO_LARGE = ProblemKind(slug="too-large", status=413, title="The request body is too large")
UNSUPPORTED = ProblemKind(
    slug="unsupported-media-type", status=415, title="Unsupported content type"
)
INVALID = ProblemKind(slug="invalid-request", status=422, title="The request is invalid")
IDEMPOTENCY_MISMATCH = ProblemKind(
    slug="idempotency-key-reused",
    status=422,
    title="This Idempotency-Key was used for a different request",
)
RATE_LIMITED = ProblemKind(slug="rate-limited", status=429, title="Too many requests")
INTERNAL = ProblemKind(slug="internal-error", status=500, title="Internal server error")
UNAVAILABLE = ProblemKind(
    slug="temporarily-unavailable", status=503, title="The service is temporarily unavailable"
)

CATALOGUE: tuple[ProblemKind, ...] = (
    MALFORMED,
    UNAUTHENTICATED,
    FORBIDDEN,
    NOT_FOUND,
    METHOD,
    NOT_ACCEPTABLE,
    CONFLICT,
    IDEMPOTENCY_BUSY,
    TOO_LARGE,
    UNSUPPORTED,
    INVALID,
    IDEMPOTENCY_MISMATCH,
    RATE_LIMITED,
    INTERNAL,
    UNAVAILABLE,
)

BY_STATUS: dict[int, ProblemKind] = {}
for _kind in CATALOGUE:
    BY_STATUS.setdefault(_kind.status, _kind)


class BodyTooLarge(Exception):
    """Raised while reading a request body that grew past the listener's limit (web.app)."""


@dataclass(frozen=True, kw_only=True)
class FieldError:
    field: str
    reason: str


class ApiProblem(Exception):
    """Raised by handlers; the API's exception handler turns it into the response."""

    def __init__(
        self,
        kind: ProblemKind,
        detail: str = "",
        *,
        errors: Iterable[FieldError] = (),
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or kind.title)
        self.kind = kind
        self.detail = detail
        self.errors = tuple(errors)
        self.headers = dict(headers or {})
        self.extra = extra

    def response(self, instance: str | None = None) -> JSONResponse:
        body: dict[str, Any] = {
            "type": self.kind.type_uri,
            "title": self.kind.title,
            "status": self.kind.status,
        }
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = [{"field": e.field, "reason": e.reason} for e in self.errors]
        body.update(self.extra)
        return JSONResponse(
            body, status_code=self.kind.status, headers=self.headers, media_type=PROBLEM_JSON
        )


def invalid(errors: Iterable[FieldError], detail: str = "") -> ApiProblem:
    errors = tuple(errors)
    if not detail:
        detail = "; ".join(f"{e.field}: {e.reason}" for e in errors)
    return ApiProblem(INVALID, detail, errors=errors)
