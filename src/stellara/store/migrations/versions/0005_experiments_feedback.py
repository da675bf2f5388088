"""Experiments and feedback: which variant served each request, what clients reported on it,
the experiments themselves, and the keys allowed to pin a variant.

Records written before this revision were in no experiment: their `experiment` and `variant`
stay NULL. Keys made before it may not pin variants.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("usage_records", sa.Column("experiment", sa.String(64)))
    op.add_column("usage_records", sa.Column("variant", sa.String(64)))
    op.create_index("ix_usage_experiment_variant", "usage_records", ["experiment", "variant"])
    op.add_column(
        "api_keys",
        sa.Column("may_pin_variants", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "experiments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("definition", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("winner", sa.String(64)),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "feedback",
        sa.Column("id", _ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("key_id", sa.String(40)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("request_id", "metric", name="uq_feedback_request_metric"),
    )


def downgrade() -> None:
    op.drop_table("feedback")
    op.drop_table("experiments")
    # SQLite drops a column only by rebuilding the table; batch mode does that there.
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("may_pin_variants")
    op.drop_index("ix_usage_experiment_variant", table_name="usage_records")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("variant")
        batch.drop_column("experiment")
