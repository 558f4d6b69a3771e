"""Each item's image geometry (rows, columns, frames, pixel spacing) recorded at job creation.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("items", sa.Column("geometry", JSONB, nullable=True))


def downgrade() -> None:
    op.drop_column("items", "geometry")
