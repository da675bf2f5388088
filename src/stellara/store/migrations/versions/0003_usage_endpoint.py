"""Usage records name the inbound API each model call came through.

`endpoint` is the route's declared path (`/v1/chat/completions`, `/v1/messages`,
`/v1/responses`, …), so spend can be split by the API clients use. Records written before it
do not know theirs: the column is nullable and they keep NULL rather than a guess.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("usage_records", sa.Column("endpoint", sa.String(256)))


def downgrade() -> None:
    # SQLite drops a column only by rebuilding the table; batch mode does that there.
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("endpoint")
