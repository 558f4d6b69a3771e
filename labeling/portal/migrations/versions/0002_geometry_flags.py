"""Each item's image geometry recorded at job creation; skipped and flagged assignments.

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
    op.add_column("assignments", sa.Column("flag", sa.String(32), nullable=True))
    op.add_column("assignments", sa.Column("comment", sa.Text, nullable=True))
    op.create_check_constraint(
        "ck_assignments_flag", "assignments",
        "flag IS NULL OR flag IN ('skipped', 'unreadable', 'wrong-body-part', 'burned-in-phi', 'other')")


def downgrade() -> None:
    op.drop_constraint("ck_assignments_flag", "assignments")
    op.drop_column("assignments", "comment")
    op.drop_column("assignments", "flag")
    op.drop_column("items", "geometry")
