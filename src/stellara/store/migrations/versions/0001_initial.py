"""Virtual keys and usage records.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(40), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(24), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("team", sa.String(256)),
        sa.Column("tier", sa.String(64)),
        sa.Column("models", sa.JSON),
        sa.Column("limits", sa.JSON),
        sa.Column("name", sa.String(256)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float),
        sa.Column("revoked_at", sa.Float),
    )
    op.create_index("ix_api_keys_user_id", "api_keys", ["user_id"])
    op.create_table(
        "usage_records",
        sa.Column("id", _ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False, unique=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("team", sa.String(256)),
        sa.Column("key_id", sa.String(40)),
        sa.Column("key_prefix", sa.String(24)),
        sa.Column("session_id", sa.String(256)),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("provider", sa.String(256)),
        sa.Column("provider_model", sa.String(256)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("cache", sa.String(16), nullable=False),
        sa.Column("stream", sa.Boolean, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("cached_tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("ttfb_ms", sa.Float),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("error_type", sa.String(64)),
        sa.Column("prompt", sa.Text),
        sa.Column("completion", sa.Text),
    )
    op.create_index("ix_usage_started_at", "usage_records", ["started_at"])
    op.create_index("ix_usage_user_started_at", "usage_records", ["user_id", "started_at"])
    op.create_index("ix_usage_model_started_at", "usage_records", ["model", "started_at"])


def downgrade() -> None:
    op.drop_table("usage_records")
    op.drop_table("api_keys")
