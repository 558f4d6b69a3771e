"""The portal's tables (SQLAlchemy 2 declarative). The Alembic migration creates exactly these.

Why the columns are what they are:

* ``items.open_slots`` counts the annotator slots still free on an item (K minus live assignments).
  Assignment picks items with ``SELECT … WHERE open_slots > 0 … FOR UPDATE SKIP LOCKED`` and
  decrements it in the same transaction: because the condition is a column of the locked row,
  PostgreSQL re-checks it after waiting for a concurrent assigner (READ COMMITTED re-evaluation),
  so an item is never given to more than K annotators.
* ``assignments`` has UNIQUE(item_id, user_id): an annotator can never hold or answer one item twice.
  An expired, unanswered lease is deleted (the slot returns to the item).
* Answers, consolidated results and the final (reviewed) label are JSON in the label shape of
  docs/architecture.md; manifest lines are kept verbatim so the export writes input line + result.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import (JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text,
                        UniqueConstraint, func)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ROLES = ("admin", "annotator", "reviewer")
JOB_STATES = ("active", "paused", "closed")
# open: still collecting answers; review: consolidated below the agreement threshold;
# done: consolidated (or reviewed) and final.
ITEM_STATES = ("open", "review", "done")
# Why an annotator flagged an image (the review page shows the text); "skipped" is not a flag for review.
FLAG_REASONS = {"unreadable": "not readable", "wrong-body-part": "wrong body part",
                "burned-in-phi": "burned-in text / PHI", "other": "other"}
SKIPPED = "skipped"

JsonType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    external_sub: Mapped[Optional[str]] = mapped_column(String(256), unique=True, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Session(Base):
    """A login session; the cookie carries its random id, signed (see security.py)."""

    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class LoginFailure(Base):
    """Failed logins, per user name and client address, for the rate limit (shared by all tasks)."""

    __tablename__ = "login_failures"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(128))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    __table_args__ = (Index("ix_login_failures_key", "username", "address", "at"),)


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    label_attribute: Mapped[str] = mapped_column(String(127))
    schema: Mapped[dict[str, Any]] = mapped_column(JsonType)
    annotators_per_item: Mapped[int] = mapped_column(Integer)
    lease_seconds: Mapped[int] = mapped_column(Integer)
    agreement_threshold: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16), default="active")
    report: Mapped[Optional[dict[str, Any]]] = mapped_column(JsonType, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    closed_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime(timezone=True), nullable=True)


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(64))
    line: Mapped[dict[str, Any]] = mapped_column(JsonType)
    # {rows, columns, frames[, pixel_spacing]} read from Orthanc at job creation (labeling/portal/geometry.py);
    # NULL only for items of jobs created before revision 0002.
    geometry: Mapped[Optional[dict[str, Any]]] = mapped_column(JsonType, nullable=True)
    open_slots: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="open")
    consolidated: Mapped[Optional[dict[str, Any]]] = mapped_column(JsonType, nullable=True)
    agreement: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    final: Mapped[Optional[dict[str, Any]]] = mapped_column(JsonType, nullable=True)
    reviewed_by: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"), nullable=True)
    reviewed_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime(timezone=True), nullable=True)
    sr_instance: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    __table_args__ = (
        UniqueConstraint("job_id", "position", name="uq_items_job_position"),
        UniqueConstraint("job_id", "source", name="uq_items_job_source"),
        Index("ix_items_pick", "job_id", "state", "open_slots", "position"),
    )


class Assignment(Base):
    __tablename__ = "assignments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    leased_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    lease_expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    submitted_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime(timezone=True), nullable=True)
    answer: Mapped[Optional[dict[str, Any]]] = mapped_column(JsonType, nullable=True)
    # Set instead of an answer: "skipped" (the slot goes back to others) or a FLAG_REASONS key (the
    # item goes to review with the reason and the optional comment).
    flag: Mapped[Optional[str]] = mapped_column(String(32), nullable=True)
    comment: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    __table_args__ = (
        UniqueConstraint("item_id", "user_id", name="uq_assignments_item_user"),
        Index("ix_assignments_job_user", "job_id", "user_id"),
        Index("ix_assignments_lease", "job_id", "submitted_at", "lease_expires_at"),
        Index("ix_assignments_item", "item_id"),
    )


def answered():
    """The SQL condition of an assignment that carries an answer (not open, skipped or flagged)."""
    return (Assignment.submitted_at.is_not(None)) & Assignment.flag.is_(None)
