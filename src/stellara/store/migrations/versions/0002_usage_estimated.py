"""Usage records say when their tokens and cost are the gateway's estimate.

A stream that ends without the provider's usage (the client gone, the provider cut off) is
charged what it relayed, counted by the gateway; existing records were all the provider's.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "usage_records",
        sa.Column("usage_estimated", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    # SQLite drops a column only by rebuilding the table; batch mode does that there.
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("usage_estimated")
