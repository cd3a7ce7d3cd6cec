"""The delivery state machine, as data.

Every change of a delivery's state goes through `check_transition`, and the store writes one
`DeliveryEvent` for it. SMPP `message_state`, receipt `stat:` words and portal labels are all
derived from `DeliveryState` here, so there is one source of truth.
"""

from __future__ import annotations

from teleway.core.model import DeliveryState as S

# (from, to) pairs that are allowed. IN_FLIGHT -> IN_FLIGHT is a lease taken over after a
# worker died; IN_FLIGHT -> QUEUED is a retry after a temporary failure.
TRANSITIONS: frozenset[tuple[S | None, S]] = frozenset(
    {
        (None, S.ACCEPTED),
        (S.ACCEPTED, S.QUEUED),
        (S.ACCEPTED, S.REJECTED),
        (S.ACCEPTED, S.CANCELLED),
        (S.QUEUED, S.IN_FLIGHT),
        (S.QUEUED, S.CANCELLED),
        (S.QUEUED, S.EXPIRED),
        (S.QUEUED, S.UNDELIVERABLE),
        (S.QUEUED, S.REJECTED),
        (S.IN_FLIGHT, S.IN_FLIGHT),
        (S.IN_FLIGHT, S.QUEUED),
        (S.IN_FLIGHT, S.DELIVERED),
        (S.IN_FLIGHT, S.UNDELIVERABLE),
        (S.IN_FLIGHT, S.EXPIRED),
        (S.IN_FLIGHT, S.REJECTED),
        (S.IN_FLIGHT, S.CANCELLED),
    }
)


class InvalidTransition(ValueError):
    """A state change the machine does not allow (a bug or a race lost)."""

    def __init__(self, from_state: S | None, to_state: S) -> None:
        super().__init__(f"delivery cannot go from {from_state} to {to_state}")
        self.from_state = from_state
        self.to_state = to_state


def can_transition(from_state: S | None, to_state: S) -> bool:
    return (from_state, to_state) in TRANSITIONS


def check_transition(from_state: S | None, to_state: S) -> None:
    if (from_state, to_state) not in TRANSITIONS:
        raise InvalidTransition(from_state, to_state)


def sources_of(to_state: S) -> frozenset[S]:
    """States a delivery may be in to move to `to_state` (used in conditional updates)."""
    return frozenset(f for f, t in TRANSITIONS if t == to_state and f is not None)


# SMPP v3.4 section 5.2.28 message_state values.
SMPP_MESSAGE_STATE: dict[S, int] = {
    S.ACCEPTED: 1,  # ENROUTE
    S.QUEUED: 1,
    S.IN_FLIGHT: 1,
    S.DELIVERED: 2,
    S.EXPIRED: 3,
    S.CANCELLED: 4,  # DELETED
    S.UNDELIVERABLE: 5,
    S.REJECTED: 8,
}

# The de-facto receipt text `stat:` words (SMPP v3.4 appendix B).
RECEIPT_STAT: dict[S, str] = {
    S.ACCEPTED: "ENROUTE",
    S.QUEUED: "ENROUTE",
    S.IN_FLIGHT: "ENROUTE",
    S.DELIVERED: "DELIVRD",
    S.EXPIRED: "EXPIRED",
    S.CANCELLED: "DELETED",
    S.UNDELIVERABLE: "UNDELIV",
    S.REJECTED: "REJECTD",
}

LABEL: dict[S, str] = {
    S.ACCEPTED: "Accepted",
    S.QUEUED: "Queued",
    S.IN_FLIGHT: "In flight",
    S.DELIVERED: "Delivered",
    S.UNDELIVERABLE: "Undeliverable",
    S.EXPIRED: "Expired",
    S.REJECTED: "Rejected",
    S.CANCELLED: "Cancelled",
}
