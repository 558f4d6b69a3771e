"""Storing an answer and consolidating an item at K answers, or the whole job at close (rules:
:mod:`labeling.portal.jobs`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from sqlalchemy import bindparam, delete, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from labeling.consolidation import ItemAnswers, JobReport, WorkerAnswer, consolidate_item, consolidate_job
from labeling.portal import series
from labeling.portal.answers import item_geometry, validate_answer
from labeling.portal.creation import job_schema
from labeling.portal.errors import Conflict, NotFound
from labeling.portal.models import Assignment, Item, Job, JsonType, User, answered, utcnow


@dataclass(frozen=True)
class SubmitResult:
    assignment_id: int
    item_id: int
    item_state: str
    consolidated: bool


# Store an answer and count the item's answers, this one included, in one statement: run after the
# item's row lock was taken, so its snapshot sees every answer committed before (READ COMMITTED).
_STORE_ANSWER = text("""
WITH stored AS (UPDATE assignments SET answer = :answer, submitted_at = :now WHERE id = :id RETURNING id)
SELECT (SELECT count(*) FROM stored) + count(*) FROM assignments
WHERE item_id = :item AND submitted_at IS NOT NULL AND flag IS NULL AND id <> :id
""").bindparams(bindparam("answer", type_=JsonType))


def submit_answer(session: Session, assignment_id: int, user: User, raw: Any,
                  now: Optional[dt.datetime] = None) -> SubmitResult:
    """Store the annotator's answer to their open lease; consolidate the item when it has K answers.
    The assignment and its item are locked and read with their job in one statement."""
    now = now or utcnow()
    found = session.execute(
        select(Assignment, Item, Job).join(Item, Item.id == Assignment.item_id).join(Job, Job.id == Assignment.job_id)
        .where(Assignment.id == assignment_id, Assignment.user_id == user.id)
        .with_for_update(of=[Assignment, Item]).execution_options(populate_existing=True)).first()
    if found is None:
        raise NotFound(f"assignment {assignment_id}: not found")
    assignment, item, job = found
    if assignment.submitted_at is not None:
        raise Conflict(f"assignment {assignment_id}: already answered")
    if job.state == "closed":
        raise Conflict(f"job {job.name!r} is closed")
    if assignment.lease_expires_at < now:
        session.delete(assignment)
        session.execute(update(Item).where(Item.id == assignment.item_id).values(open_slots=Item.open_slots + 1))
        raise Conflict(f"assignment {assignment_id}: the lease expired at "
                       f"{assignment.lease_expires_at.isoformat()}; take the next task")
    answer = validate_answer(job_schema(job), raw, image=item_geometry(item))
    count = session.execute(_STORE_ANSWER, {"answer": answer, "now": now, "id": assignment.id,
                                            "item": item.id}).scalar_one()
    set_committed_value(assignment, "answer", answer)
    set_committed_value(assignment, "submitted_at", now)
    consolidated = False
    if count >= job.annotators_per_item and item.state == "open":
        consolidate_now(session, job, item)
        consolidated = True
    return SubmitResult(assignment.id, item.id, item.state, consolidated)


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


def _apply(job: Job, item: Item, content: dict[str, Any]) -> None:
    item.consolidated = content
    item.agreement = item_agreement(content)
    if item.agreement is not None and item.agreement < job.agreement_threshold:
        item.state, item.final = "review", None
    else:
        item.state, item.final = "done", content


def consolidate_now(session: Session, job: Job, item: Item) -> dict[str, Any]:
    answers = item_answers(session, item)
    if not answers:
        raise Conflict(f"item {item.id}: no answers to consolidate")
    state = JobReport.from_dict(job.report) if job.report else None
    schema = job_schema(job)
    content = consolidate_item(ItemAnswers(str(item.id), tuple(WorkerAnswer(n, a) for n, a, _ in answers),
                                           slice_order=series.slice_order(item.geometry)),
                               list(schema.label_names), job_state=state, uncertain_policy=schema.uncertain_policy)
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
