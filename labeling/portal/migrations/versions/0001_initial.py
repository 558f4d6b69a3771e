"""The portal's first schema: users, sessions, login failures, jobs, items, assignments.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create every table of the first schema. Over 80 lines on purpose: a migration is one schema
    declaration, read top to bottom against the models; split into helpers it would no longer show
    the revision's whole schema in one place (and a released revision is never edited)."""
    tz = sa.DateTime(timezone=True)
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=True),
        sa.Column("external_sub", sa.String(256), nullable=True, unique=True),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", tz, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("role IN ('admin', 'annotator', 'reviewer')", name="ck_users_role"),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("created_at", tz, nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", tz, nullable=False),
    )
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("at", tz, nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_login_failures_key", "login_failures", ["username", "address", "at"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("label_attribute", sa.String(127), nullable=False),
        sa.Column("schema", JSONB, nullable=False),
        sa.Column("annotators_per_item", sa.Integer, nullable=False),
        sa.Column("lease_seconds", sa.Integer, nullable=False),
        sa.Column("agreement_threshold", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="active"),
        sa.Column("report", JSONB, nullable=True),
        sa.Column("created_at", tz, nullable=False, server_default=sa.func.now()),
        sa.Column("closed_at", tz, nullable=True),
        sa.CheckConstraint("state IN ('active', 'paused', 'closed')", name="ck_jobs_state"),
        sa.CheckConstraint("annotators_per_item >= 1", name="ck_jobs_k"),
    )
    op.create_table(
        "items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("line", JSONB, nullable=False),
        sa.Column("open_slots", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="open"),
        sa.Column("consolidated", JSONB, nullable=True),
        sa.Column("agreement", sa.Float, nullable=True),
        sa.Column("final", JSONB, nullable=True),
        sa.Column("reviewed_by", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
        sa.Column("reviewed_at", tz, nullable=True),
        sa.Column("sr_instance", sa.String(64), nullable=True),
        sa.UniqueConstraint("job_id", "position", name="uq_items_job_position"),
        sa.UniqueConstraint("job_id", "source", name="uq_items_job_source"),
        sa.CheckConstraint("open_slots >= 0", name="ck_items_open_slots"),
        sa.CheckConstraint("state IN ('open', 'review', 'done')", name="ck_items_state"),
    )
    op.create_index("ix_items_pick", "items", ["job_id", "state", "open_slots", "position"])
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("leased_at", tz, nullable=False),
        sa.Column("lease_expires_at", tz, nullable=False),
        sa.Column("submitted_at", tz, nullable=True),
        sa.Column("answer", JSONB, nullable=True),
        sa.UniqueConstraint("item_id", "user_id", name="uq_assignments_item_user"),
    )
    op.create_index("ix_assignments_job_user", "assignments", ["job_id", "user_id"])
    op.create_index("ix_assignments_lease", "assignments", ["job_id", "submitted_at", "lease_expires_at"])
    op.create_index("ix_assignments_item", "assignments", ["item_id"])


def downgrade() -> None:
    for table in ("assignments", "items", "jobs", "login_failures", "sessions", "users"):
        op.drop_table(table)
