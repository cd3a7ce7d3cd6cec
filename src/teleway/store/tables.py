"""The schema, as SQLAlchemy Core tables: one definition for SQLite and PostgreSQL.

Times are stored as UTC epoch seconds (double precision) via `Timestamp`, which compares and
indexes the same way on both engines. Migrations (store/migrations) must match this file.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Double,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator


class Timestamp(TypeDecorator[datetime]):
    """Aware UTC datetime <-> epoch seconds."""

    impl = Double
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> float | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.timestamp()

    def process_result_value(self, value: float | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return datetime.fromtimestamp(value, UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("settings", JSON, nullable=False, default=dict),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=True),
    Column("username", String(128), nullable=False, unique=True),
    Column("email", String(254), nullable=True),
    Column("password_hash", String(256), nullable=False),
    Column("role", String(16), nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", Timestamp, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

sender_rules = Table(
    "sender_rules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    # lower-cased `user@domain` or `*@domain`; one address belongs to one account
    Column("pattern", String(320), nullable=False, unique=True),
    Column("created_at", Timestamp, nullable=False),
)

networks = Table(
    "networks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("cidr", String(64), nullable=False),  # normalised, e.g. 192.0.2.0/24, 2001:db8::/32
    Column("created_at", Timestamp, nullable=False),
    UniqueConstraint("account_id", "cidr"),
)

smpp_credentials = Table(
    "smpp_credentials",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("system_id", String(16), nullable=False, unique=True),  # SMPP v3.4 5.2.1: 16 octets
    Column("password_hash", String(256), nullable=False),
    Column("system_type", String(13), nullable=True),
    Column("max_binds", Integer, nullable=False, default=4),
    Column("throughput", Float, nullable=False, default=100.0),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

messages = Table(
    "messages",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False),
    Column("origin", String(8), nullable=False),
    Column("submitter", String(320), nullable=False),
    Column("subject", Text, nullable=False, default=""),
    Column("text", Text, nullable=False, default=""),
    Column("data_coding", Integer, nullable=True),
    Column("raw", LargeBinary, nullable=True),
    Column("attachments", JSON, nullable=False, default=list),
    Column("options", JSON, nullable=False, default=dict),
    Column("created_at", Timestamp, nullable=False),
    Index(None, "account_id", "created_at"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("message_id", String(64), ForeignKey("messages.id"), nullable=False, index=True),
    Column("account_id", Integer, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("recipient", String(16), nullable=False),  # E.164: at most 15 digits and '+'
    Column("device", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Timestamp, nullable=False),
    Column("valid_until", Timestamp, nullable=False),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_expires_at", Timestamp, nullable=True),
    Column("channel", String(64), nullable=True),
    Column("upstream_ids", JSON, nullable=False, default=list),
    Column("error", Text, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    # the message's origin and what it asked to be told (core.model.ReportOn): a state change
    # the delivery reports adds an `outbox` row in the same transaction
    Column("origin", String(8), nullable=False, server_default="cli"),
    Column("report", String(8), nullable=False, server_default="none"),
    Index(None, "state", "next_attempt_at"),
    Index(None, "account_id", "created_at"),
    # the queue's other searches: expired leases to take over, validity ends to expire
    Index(None, "state", "lease_expires_at"),
    Index(None, "state", "valid_until"),
    # replies (MO) are threaded to the latest message sent to their sender
    Index(None, "recipient", "created_at"),
)

# upstream message id -> delivery (one row per SMS part), for receipt matching; `state` is the
# part's own outcome (NULL while pending, else a receipt stat word such as DELIVRD)
upstream_refs = Table(
    "upstream_refs",
    metadata,
    Column("upstream_id", String(128), primary_key=True),
    Column("delivery_id", String(64), ForeignKey("deliveries.id"), nullable=False, index=True),
    Column("part", Integer, nullable=False, default=1),
    Column("state", String(16), nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=True),
)

delivery_events = Table(
    "delivery_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", String(64), nullable=False, index=True),
    Column("at", Timestamp, nullable=False),
    Column("from_state", String(16), nullable=True),
    Column("to_state", String(16), nullable=False),
    Column("reason", Text, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Timestamp, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", String(256), nullable=False),
    Column("detail", JSON, nullable=False, default=dict),
)


# Things to send back to customers, written in the same transaction as their cause: delivery
# reports (kind "report", added by the store when a delivery whose `report` wants the new state
# changes state) and inbound messages (kind "inbound": replies from phones, routed to an account).
# The reporter of each origin (notify/: SMPP receipts, e-mail, webhooks) leases them in id order.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(8), nullable=False),
    Column("origin", String(8), nullable=False),
    Column("account_id", Integer, nullable=False),
    Column("message_id", String(64), nullable=True),
    Column("delivery_id", String(64), nullable=True),
    Column("state", String(16), nullable=True),
    Column("payload", JSON, nullable=False, default=dict),
    Column("status", String(8), nullable=False),  # pending, sent, dropped
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Timestamp, nullable=False),
    Column("valid_until", Timestamp, nullable=False),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_expires_at", Timestamp, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Index(None, "status", "origin", "next_attempt_at"),
    Index(None, "account_id", "created_at"),
    Index(None, "delivery_id"),
)

# REST API keys: only a SHA-256 of the key is kept (the key is 256 random bits, shown once)
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("prefix", String(16), nullable=False),  # shown in lists to tell keys apart
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("rate_limit", Float, nullable=True),  # requests per second; NULL: the default
    Column("created_at", Timestamp, nullable=False),
    Column("last_used_at", Timestamp, nullable=True),
    Column("revoked_at", Timestamp, nullable=True),
    UniqueConstraint("account_id", "name"),
)

# `Idempotency-Key` of REST submissions: the same key and body get the same answer
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("account_id", Integer, primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("message_id", String(64), nullable=False),
    Column("response", JSON, nullable=False, default=dict),
    Column("created_at", Timestamp, nullable=False),
    Index(None, "created_at"),
)

# each webhook call, for the portal ("last responses")
webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("outbox_id", Integer, nullable=False, index=True),
    Column("account_id", Integer, nullable=False),
    Column("url", Text, nullable=False),
    Column("at", Timestamp, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("response", Text, nullable=True),  # first KiB of the body
    Column("error", Text, nullable=True),
    Column("duration_ms", Float, nullable=True),
    Index(None, "account_id", "at"),
)

# portal sessions: the cookie carries a random token, the table its SHA-256
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("ip", String(64), nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    Column("last_seen_at", Timestamp, nullable=False),
    Index(None, "user_id"),
)

# numbers (long numbers, short codes, alphanumeric ids) an account receives replies on
inbound_numbers = Table(
    "inbound_numbers",
    metadata,
    Column("number", String(32), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Index(None, "account_id"),
)

# parts of a concatenated reply (MO) that were acknowledged to the SMSC before the rest came
# (channels.sms: after MO_HOLD_SECONDS): kept here so that a restart does not lose them; the
# rows of a group go once its whole message is stored, or when it is given up as incomplete
held_mo_parts = Table(
    "held_mo_parts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("upstream", String(64), nullable=False),
    Column("source_addr", String(32), nullable=False),
    Column("destination_addr", String(32), nullable=False),
    Column("data_coding", Integer, nullable=False),
    Column("reference", Integer, nullable=False),
    Column("total", Integer, nullable=False),
    Column("number", Integer, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("received_at", Timestamp, nullable=False),
    Index(None, "upstream", "source_addr", "reference"),
)
