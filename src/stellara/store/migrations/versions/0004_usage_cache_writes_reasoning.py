"""Usage records count the prompt tokens written to the provider's cache and the completion's
reasoning tokens.

Anthropic bills cache writes above the input rate, and thinking is billed as output the client
may not see: both belong in spend reports. Records written before this revision do not know
them: the columns are nullable and they keep NULL rather than a guess.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("usage_records", sa.Column("cache_write_tokens", sa.Integer))
    op.add_column("usage_records", sa.Column("reasoning_tokens", sa.Integer))


def downgrade() -> None:
    # SQLite drops a column only by rebuilding the table; batch mode does that there.
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("reasoning_tokens")
        batch.drop_column("cache_write_tokens")
