"""Parts of concatenated replies (MO) acknowledged before their message was complete.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "held_mo_parts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("upstream", sa.String(length=64), nullable=False),
        sa.Column("source_addr", sa.String(length=32), nullable=False),
        sa.Column("destination_addr", sa.String(length=32), nullable=False),
        sa.Column("data_coding", sa.Integer(), nullable=False),
        sa.Column("reference", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_held_mo_parts")),
    )
    op.create_index(
        op.f("ix_held_mo_parts_upstream_source_addr_reference"),
        "held_mo_parts",
        ["upstream", "source_addr", "reference"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_held_mo_parts_upstream_source_addr_reference"),
        table_name="held_mo_parts",
    )
    op.drop_table("held_mo_parts")
