"""Storing an answer and consolidating an item at K answers, or the whole job at close (rules:
:mod:`labeling.portal.jobs`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from labeling.consolidation import ItemAnswers, JobReport, WorkerAnswer, consolidate_item, consolidate_job
from labeling.contracts.schema import LabelSchema
from labeling.portal import series
from labeling.portal.answers import geometry_of, validate_answer
from labeling.portal.creation import job_schema, schema_of
from labeling.portal.db import driver_connection_of, driver_sql
from labeling.portal.errors import Conflict, NotFound
from labeling.portal.models import Assignment, Item, Job, User, answered, utcnow


@dataclass(frozen=True)
class SubmitResult:
    assignment_id: int
    item_id: int
    item_state: str
    consolidated: bool


# The caller's own assignment and its item locked, with what the answer is checked against (the item's
# geometry, its line only when no geometry was recorded, the job), in one statement.
_LOCK_FOR_ANSWER = driver_sql("""
SELECT a.item_id, a.submitted_at, a.lease_expires_at, i.state, i.geometry,
  CASE WHEN i.geometry IS NULL THEN i.line END, j.id, j.name, j.state, j.schema, j.annotators_per_item,
  j.agreement_threshold
FROM assignments a JOIN items i ON i.id = a.item_id JOIN jobs j ON j.id = a.job_id
WHERE a.id = :id AND a.user_id = :user FOR UPDATE OF a, i""")
# Store an answer and count the item's answers, this one included, in one statement: run after the
# item's row lock was taken, so its snapshot sees every answer committed before (READ COMMITTED).
_STORE_ANSWER = driver_sql("""
WITH stored AS (UPDATE assignments SET answer = :answer, submitted_at = :now WHERE id = :id RETURNING id)
SELECT (SELECT count(*) FROM stored) + count(*) FROM assignments
WHERE item_id = :item AND submitted_at IS NOT NULL AND flag IS NULL AND id <> :id
""")
# What consolidating one item at K answers reads, in one row: the job's report and the item's
# [annotator, answer] pairs as :func:`item_answers` orders them; and what it writes (:func:`consolidated_fields`).
_CONSOLIDATION_INPUT = driver_sql("""
SELECT j.report, coalesce((
  SELECT jsonb_agg(jsonb_build_array(u.name, a.answer) ORDER BY a.submitted_at, a.id)
  FROM assignments a JOIN users u ON u.id = a.user_id
  WHERE a.item_id = :item AND a.submitted_at IS NOT NULL AND a.flag IS NULL), '[]')
FROM jobs j WHERE j.id = :job""")
_SET_CONSOLIDATED = driver_sql("""
UPDATE items SET consolidated = :consolidated, agreement = :agreement, state = :state, final = :final
WHERE id = :item""")


def submit_answer(session: Session, assignment_id: int, user: User, raw: Any,
                  now: Optional[dt.datetime] = None) -> SubmitResult:
    """:func:`submit_answer_on` in ``session``'s transaction (its connection)."""
    return submit_answer_on(driver_connection_of(session), assignment_id, user, raw, now)


def submit_answer_on(conn: psycopg.Connection, assignment_id: int, user: User, raw: Any,
                     now: Optional[dt.datetime] = None) -> SubmitResult:
    """Store the annotator's answer to their open lease; consolidate the item when it has K answers.
    ``conn``: a psycopg connection in a transaction (db.driver_transaction), so a refusal rolls back
    whatever was written. Plain statements, no ORM objects: this runs for every answer (issue 12)."""
    now = now or utcnow()
    found = conn.execute(_LOCK_FOR_ANSWER, {"id": assignment_id, "user": user.id}).fetchone()
    if found is None:
        raise NotFound(f"assignment {assignment_id}: not found")
    (item_id, submitted_at, lease_expires_at, item_state, geometry, line, job_id, job_name, job_state,
     schema, k, threshold) = found
    if submitted_at is not None:
        raise Conflict(f"assignment {assignment_id}: already answered, skipped or flagged")
    if job_state == "closed":
        raise Conflict(f"job {job_name!r} is closed")
    if lease_expires_at < now:  # the lease itself is left to the sweep (leasing.expire_leases)
        raise Conflict(f"assignment {assignment_id}: the lease expired at "
                       f"{lease_expires_at.isoformat()}; take the next task")
    labels = schema_of(job_id, job_name, schema)
    answer = validate_answer(labels, raw, image=geometry_of(geometry, line))
    count = conn.execute(_STORE_ANSWER, {"answer": Jsonb(answer), "now": now, "id": assignment_id,
                                         "item": item_id}).fetchone()[0]  # type: ignore[index]
    if count < k or item_state != "open":
        return SubmitResult(assignment_id, item_id, item_state, False)
    report, answers = conn.execute(_CONSOLIDATION_INPUT, {"item": item_id, "job": job_id}).fetchone()  # type: ignore[misc]
    content = consolidated_content(item_id, geometry, answers, labels, report)
    fields = consolidated_fields(threshold, content)
    conn.execute(_SET_CONSOLIDATED, {**fields, "consolidated": Jsonb(fields["consolidated"]),
                                     "final": Jsonb(fields["final"]), "item": item_id})
    return SubmitResult(assignment_id, item_id, fields["state"], True)


def item_answers(session: Session, item: Item) -> list[tuple[str, dict[str, Any], Assignment]]:
    rows = session.execute(
        select(User.name, Assignment).join(User, User.id == Assignment.user_id)
        .where(Assignment.item_id == item.id, answered())
        .order_by(Assignment.submitted_at, Assignment.id)).all()
    return [(name, a.answer, a) for name, a in rows]


def item_agreement(content: Mapping[str, Any]) -> Optional[float]:
    agreement = content.get("agreement") or {}
    values = [v for v in (agreement.get("labels"), agreement.get("rois_mean_iou")) if v is not None]
    return min(values) if values else None


def consolidated_fields(threshold: float, content: dict[str, Any]) -> dict[str, Any]:
    """An item's columns once consolidated: in review below the job's agreement threshold, else done
    with the consolidated answer as its final label."""
    agreement = item_agreement(content)
    if agreement is not None and agreement < threshold:
        return {"consolidated": content, "agreement": agreement, "state": "review", "final": None}
    return {"consolidated": content, "agreement": agreement, "state": "done", "final": content}


def _apply(job: Job, item: Item, content: dict[str, Any]) -> None:
    for key, value in consolidated_fields(job.agreement_threshold, content).items():
        setattr(item, key, value)


def consolidated_content(item_id: int, geometry: Optional[Mapping[str, Any]], answers: Sequence[Sequence[Any]],
                         schema: LabelSchema, report: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """One item's consolidated ``<attr>`` content from its ``(annotator, answer)`` pairs, with the job's
    last report (Dawid–Skene qualities) as the prior."""
    if not answers:
        raise Conflict(f"item {item_id}: no answers to consolidate")
    return consolidate_item(ItemAnswers(str(item_id), tuple(WorkerAnswer(n, a) for n, a in answers),
                                        slice_order=series.slice_order(geometry)),
                            list(schema.label_names), job_state=JobReport.from_dict(report) if report else None,
                            uncertain_policy=schema.uncertain_policy)


def consolidate_now(session: Session, job: Job, item: Item) -> dict[str, Any]:
    content = consolidated_content(item.id, item.geometry, [(n, a) for n, a, _ in item_answers(session, item)],
                                   job_schema(job), job.report)
    _apply(job, item, content)
    return content


def close_job(session: Session, job: Job, now: Optional[dt.datetime] = None) -> dict[str, Any]:
    """Close a job: drop open leases, consolidate the whole job (Dawid–Skene), finish partial items."""
    now = now or utcnow()
    if job.state == "closed":
        raise Conflict(f"job {job.name!r} is already closed")
    job.state = "closed"
    job.closed_at = now
    session.execute(delete(Assignment).where(Assignment.job_id == job.id, Assignment.submitted_at.is_(None)))
    items = session.scalars(select(Item).where(Item.job_id == job.id).order_by(Item.position)
                            .with_for_update()).all()
    by_item: dict[int, list[tuple[str, dict[str, Any], Assignment]]] = {}
    for name, assignment in session.execute(  # every answer of the job in one query
            select(User.name, Assignment).join(User, User.id == Assignment.user_id)
            .where(Assignment.job_id == job.id, answered())
            .order_by(Assignment.submitted_at, Assignment.id)).all():
        by_item.setdefault(assignment.item_id, []).append((name, assignment.answer, assignment))
    answered_items = [(item, by_item[item.id]) for item in items if item.id in by_item]
    summary = {"items": len(items), "answered": len(answered_items), "consolidated_at_close": 0, "errors": []}
    if not answered_items:
        return summary
    schema = job_schema(job)
    result = consolidate_job([ItemAnswers(str(item.id), tuple(WorkerAnswer(n, a) for n, a, _ in ans),
                                          slice_order=series.slice_order(item.geometry))
                              for item, ans in answered_items], list(schema.label_names),
                             uncertain_policy=schema.uncertain_policy)
    job.report = result.report.to_dict()
    summary["errors"] = [str(e) for e in result.errors]
    for item, _ in answered_items:
        if item.state == "open" and str(item.id) in result.items:
            _apply(job, item, result.items[str(item.id)])
            summary["consolidated_at_close"] += 1
    return summary
