"""Assignment: the lease of the next item (one statement in the common case), the annotator's queue,
which items a user may see, skip and flag (rules: :mod:`labeling.portal.jobs`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Optional

from sqlalchemy import delete, exists, func, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, aliased, sessionmaker

from labeling.portal.creation import get_job
from labeling.portal.db import driver_sql, one_row, transaction
from labeling.portal.errors import Conflict, Forbidden, Invalid, NotFound
from labeling.portal.models import FLAG_REASONS, SKIPPED, Assignment, Item, Job, User, utcnow


def expire_leases(session: Session, job_id: int, now: dt.datetime) -> int:
    """Delete expired unanswered leases of a job and give their slots back; returns how many."""
    expired = session.execute(
        delete(Assignment).where(Assignment.job_id == job_id, Assignment.submitted_at.is_(None),
                                 Assignment.lease_expires_at < now).returning(Assignment.item_id)
    ).scalars().all()
    for item_id in expired:
        session.execute(update(Item).where(Item.id == item_id).values(open_slots=Item.open_slots + 1))
    return len(expired)


def current_lease(session: Session, job_id: int, user: User, now: dt.datetime) -> Optional[Assignment]:
    return session.scalars(
        select(Assignment).where(Assignment.job_id == job_id, Assignment.user_id == user.id,
                                 Assignment.submitted_at.is_(None), Assignment.lease_expires_at >= now)
        .order_by(Assignment.id).limit(1)).first()


# The one rule of an item "open to an annotator" (one they may still be given): open, a free slot,
# and never assigned to them (leased, answered, skipped or flagged). SQL over ``items i`` with the
# parameters :job and :user; the lease statement, next_task, "n of N" and the progress all use it.
OPEN_TO_ANNOTATOR = ("i.job_id = :job AND i.state = 'open' AND i.open_slots > 0 AND NOT EXISTS "
                     "(SELECT 1 FROM assignments a WHERE a.item_id = i.id AND a.user_id = :user)")
_ITEM_I = aliased(Item, name="i")


def open_to_annotator(job_id: int, user_id: int):
    """:data:`OPEN_TO_ANNOTATOR` as a condition on ``_ITEM_I`` (the ``items i`` of an ORM query)."""
    return text(OPEN_TO_ANNOTATOR).bindparams(job=job_id, user=user_id)


# The common case of ``next`` in one statement: the job (active), the annotator's live lease, else the
# first free item (locked SKIP LOCKED, its slot taken, a lease inserted), with what the task needs — the
# job's name and schema, the item, "n of N" and the likely next item to prefetch. The final SELECT sees
# the snapshot before the CTE's writes, hence ``i.id <> lease.item_id``. No row: the job is not active,
# or nothing is free without waiting or sweeping → the general path (next_task); nothing was written then.
# Run alone in autocommit mode (db.one_row), it is its own transaction: no BEGIN/COMMIT round trips.
_LEASE_AND_FETCH = driver_sql("""
WITH job AS (SELECT id, name, schema, lease_seconds FROM jobs WHERE id = :job AND state = 'active'),
cur AS (
  SELECT id, item_id, lease_expires_at FROM assignments
  WHERE EXISTS (SELECT 1 FROM job) AND job_id = :job AND user_id = :user AND submitted_at IS NULL
    AND lease_expires_at >= :now
  ORDER BY id LIMIT 1),
pick AS (
  SELECT i.id FROM items i
  WHERE EXISTS (SELECT 1 FROM job) AND NOT EXISTS (SELECT 1 FROM cur) AND {open}
  ORDER BY i.position LIMIT 1 FOR UPDATE OF i SKIP LOCKED),
taken AS (
  UPDATE items SET open_slots = items.open_slots - 1 FROM pick WHERE items.id = pick.id RETURNING items.id),
ins AS (
  INSERT INTO assignments (job_id, item_id, user_id, leased_at, lease_expires_at)
  SELECT :job, taken.id, :user, :now, :now + make_interval(secs => job.lease_seconds) FROM taken, job
  RETURNING id, item_id, lease_expires_at),
lease AS (SELECT id, item_id, lease_expires_at FROM cur UNION ALL SELECT id, item_id, lease_expires_at FROM ins)
SELECT lease.id, lease.item_id, lease.lease_expires_at, it.source, it.line, it.geometry,
  job.name AS job_name, job.schema AS job_schema,
  (SELECT count(*) FROM assignments a
   WHERE a.job_id = :job AND a.user_id = :user AND a.submitted_at IS NOT NULL) AS finished,
  (SELECT count(*) FROM items i WHERE {open} AND i.id <> lease.item_id) AS available,
  up.id AS upcoming_item, up.source AS upcoming
FROM lease JOIN items it ON it.id = lease.item_id CROSS JOIN job
LEFT JOIN LATERAL (
  SELECT i.id, i.source FROM items i WHERE {open} AND i.id <> lease.item_id
  ORDER BY i.position LIMIT 1) up ON true
""".format(open=OPEN_TO_ANNOTATOR))


@dataclass(frozen=True)
class JobRef:
    """What a task names of its job (the fast path reads these without loading the Job row)."""

    id: int
    name: str
    schema: dict[str, Any]


@dataclass(frozen=True)
class Task:
    """A leased item and what the annotator's page needs about it."""

    assignment_id: int
    item_id: int
    lease_expires_at: dt.datetime
    source: str
    line: dict[str, Any]
    geometry: Optional[dict[str, Any]]
    position: int
    total: int
    upcoming: Optional[str]  # the source of the item the annotator would most likely get next
    submitted: bool = False
    upcoming_item: Optional[int] = None  # that item's id (the browser prefetches its image)


def lease_and_fetch(engine: Engine, factory: sessionmaker[Session], job_id: int, user: User,
                    now: Optional[dt.datetime] = None) -> tuple[JobRef, Optional[Task]]:
    """:func:`next_task` + the task's data: one statement in the common case, else the general path
    in a transaction of ``factory`` (which also says why a job that is missing or not active gives no task)."""
    now = now or utcnow()
    if user.role != "annotator":
        raise Forbidden("only annotators take labeling tasks")
    row = one_row(engine, _LEASE_AND_FETCH, {"job": job_id, "user": user.id, "now": now})
    if row is not None:
        (lease_id, item_id, expires, source, line, geometry, job_name, job_schema, finished, available,
         upcoming_item, upcoming) = row
        return JobRef(job_id, job_name, job_schema), Task(
            lease_id, item_id, expires, source, line, geometry, int(finished) + 1,
            int(finished) + 1 + int(available), upcoming, upcoming_item=upcoming_item)
    with transaction(factory) as session:
        job = get_job(session, job_id)
        ref = JobRef(job.id, job.name, job.schema)
        lease = next_task(session, job, user, now)
        return ref, (None if lease is None else task_of(session, job, user, lease))


def task_of(session: Session, job: Job, user: User, assignment: Assignment) -> Task:
    item = session.get(Item, assignment.item_id)
    assert item is not None
    position, upcoming = queue_position(session, job, user)
    return Task(assignment.id, item.id, assignment.lease_expires_at, item.source, item.line, item.geometry,
                position["position"], position["total"], upcoming and upcoming[1], assignment.submitted_at is not None,
                upcoming_item=upcoming and upcoming[0])


SWEEP_INTERVAL_S = 15.0
_last_sweep: dict[int, dt.datetime] = {}  # job id → last expiry sweep in this process


def next_task(session: Session, job: Job, user: User, now: Optional[dt.datetime] = None) -> Optional[Assignment]:
    """The annotator's live lease, or a newly leased item; None when nothing is left for them.

    Expired leases are swept at most every SWEEP_INTERVAL_S per job and process, and always before
    answering "nothing left" (a DELETE per request was most of the cost of ``next`` under load)."""
    now = now or utcnow()
    if user.role != "annotator":
        raise Forbidden("only annotators take labeling tasks")
    if job.state != "active":
        raise Conflict(f"job {job.name!r} is {job.state}")
    lease = current_lease(session, job.id, user, now)
    if lease is not None:
        return lease
    last = _last_sweep.get(job.id)
    swept = last is None or abs((now - last).total_seconds()) >= SWEEP_INTERVAL_S
    if swept:
        expire_leases(session, job.id, now)
        _last_sweep[job.id] = now
    query = select(_ITEM_I).where(open_to_annotator(job.id, user.id)).order_by(_ITEM_I.position).limit(1)
    item = session.scalars(query.with_for_update(skip_locked=True)).first()
    if item is None and not swept:
        expire_leases(session, job.id, now)
        _last_sweep[job.id] = now
        item = session.scalars(query.with_for_update(skip_locked=True)).first()
    if item is None:
        # Every candidate may just be locked by other annotators' assignments in flight: wait for
        # them (milliseconds) and re-check their free slots, rather than answer "nothing left".
        item = session.scalars(query.with_for_update()).first()
    if item is None:
        return None
    item.open_slots -= 1
    lease = Assignment(job_id=job.id, item_id=item.id, user_id=user.id, leased_at=now,
                       lease_expires_at=now + dt.timedelta(seconds=job.lease_seconds))
    session.add(lease)
    session.flush()
    return lease


def get_assignment(session: Session, assignment_id: int, user: User, *, lock: bool = False) -> Assignment:
    """The user's own assignment; anyone else's is reported as missing (no probing of other ids)."""
    query = select(Assignment).where(Assignment.id == assignment_id, Assignment.user_id == user.id)
    if lock:
        query = query.with_for_update()
    assignment = session.scalars(query).first()
    if assignment is None:
        raise NotFound(f"assignment {assignment_id}: not found")
    return assignment


def only_visible(query: Any, user: User) -> Any:
    """``query`` over ``Item`` narrowed to the items ``user`` may see: every item for reviewers and
    admins, an annotator's only when assigned to them (leased or answered)."""
    if user.role in ("admin", "reviewer"):
        return query
    return query.where(exists().where(Assignment.item_id == Item.id, Assignment.user_id == user.id))


def can_view_item(session: Session, item: Item, user: User) -> bool:
    """Reviewers and admins see every item; an annotator only items assigned to them (leased or answered)."""
    if user.role in ("admin", "reviewer"):
        return True
    return session.scalar(select(Assignment.id).where(Assignment.item_id == item.id,
                                                      Assignment.user_id == user.id).limit(1)) is not None


# Who may see an item, as SQL over ``items i`` and ``users u``; :func:`only_visible` is the same rule for
# ORM queries over ``Item``.
VISIBLE_TO_USER = ("(u.role IN ('admin', 'reviewer') OR EXISTS "
                   "(SELECT 1 FROM assignments a WHERE a.item_id = i.id AND a.user_id = u.id))")
# What the item routes read of item %(item)s for the user ``u`` (NULL: missing or not theirs), in the
# statement that also checks the session (core.Portal.item_read; psycopg parameters, db.one_row):
# ``source``: the image route's Orthanc ID, a series item's first slice (labeling/portal/series.py).
# %(early)s: the caller checked a prefetch token for this item (offered as the annotator's likely next
# item), so an annotator may read it while it is still open, before it is leased to them.
# ``geometry``: ``[geometry]`` (its slices, for the slice route).
ITEM_READS = {
    "source": ("(SELECT coalesce(i.geometry #>> '{slices,0,0}', i.source) FROM items i WHERE i.id = %(item)s "
               "AND CASE WHEN u.role = 'annotator' AND %(early)s THEN i.state = 'open' ELSE "
               + VISIBLE_TO_USER + " END)"),
    "geometry": ("(SELECT jsonb_build_array(i.geometry) FROM items i WHERE i.id = %(item)s AND "
                 + VISIBLE_TO_USER + ")"),
}


def get_item_for(session: Session, item_id: int, user: User) -> Item:
    item = session.get(Item, item_id)
    if item is None or not can_view_item(session, item, user):
        # Same answer for "missing" and "not yours": ids of other jobs' items are not confirmed.
        raise NotFound(f"item {item_id}: not found")
    return item


def queue_position(session: Session, job: Job, user: User) -> tuple[dict[str, int], Optional[tuple[int, str]]]:
    """"n of N" for an annotator holding a lease — n = items they finished + 1, N = n + items still
    open to them — and the id and source of the item they would most likely get next (to prefetch its
    image): one statement."""
    open_to_me = open_to_annotator(job.id, user.id)
    finished = (select(func.count(Assignment.id)).where(
        Assignment.job_id == job.id, Assignment.user_id == user.id, Assignment.submitted_at.is_not(None))
        .scalar_subquery())
    available = select(func.count(_ITEM_I.id)).where(open_to_me).scalar_subquery()
    first_open = select(_ITEM_I.id).where(open_to_me).order_by(_ITEM_I.position).limit(1).scalar_subquery()
    source_of = select(Item.source).where(Item.id == first_open).scalar_subquery()
    done, left, item_id, source = session.execute(select(finished, available, first_open, source_of)).one()
    return {"position": int(done) + 1, "total": int(done) + 1 + int(left)}, \
        (None if item_id is None else (int(item_id), source))


def _open_assignment(session: Session, assignment_id: int, user: User) -> Assignment:
    assignment = get_assignment(session, assignment_id, user, lock=True)
    if assignment.submitted_at is not None:
        raise Conflict(f"assignment {assignment_id}: already answered, skipped or flagged")
    if get_job(session, assignment.job_id).state == "closed":
        raise Conflict("the job is closed")
    return assignment


def skip_task(session: Session, assignment_id: int, user: User, now: Optional[dt.datetime] = None) -> Assignment:
    """Give the item back: its slot returns to other annotators, and this one never gets it again."""
    assignment = _open_assignment(session, assignment_id, user)
    assignment.submitted_at, assignment.flag = now or utcnow(), SKIPPED
    session.execute(update(Item).where(Item.id == assignment.item_id).values(open_slots=Item.open_slots + 1))
    return assignment


MAX_COMMENT = 1000


def flag_task(session: Session, assignment_id: int, user: User, reason: str, comment: str = "",
              now: Optional[dt.datetime] = None) -> Item:
    """Flag the image (FLAG_REASONS): it leaves every annotator's queue and waits for review with the reason."""
    if reason not in FLAG_REASONS:
        raise Invalid(f"flag reason {reason!r}: expected one of {', '.join(FLAG_REASONS)}")
    comment = (comment or "").strip()
    if len(comment) > MAX_COMMENT:
        raise Invalid(f"flag comment: at most {MAX_COMMENT} characters, got {len(comment)}")
    if reason == "other" and not comment:
        raise Invalid("flag comment: say what is wrong when the reason is 'other'")
    assignment = _open_assignment(session, assignment_id, user)
    assignment.submitted_at, assignment.flag, assignment.comment = now or utcnow(), reason, comment or None
    item = session.scalars(select(Item).where(Item.id == assignment.item_id).with_for_update().execution_options(populate_existing=True)).one()
    if item.state == "open":
        item.state = "review"
    return item
