"""Review: the queue, an item's answers and flags for a reviewer, and the decision (rules:
:mod:`labeling.portal.jobs`)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Optional, Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from labeling.portal.answering import item_answers
from labeling.portal.answers import item_geometry, validate_answer
from labeling.portal.creation import get_job, job_schema
from labeling.portal.errors import Conflict, Forbidden, Invalid
from labeling.portal.models import FLAG_REASONS, SKIPPED, Assignment, Item, User, utcnow


def flags_by_item(session: Session, item_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """Flags raised on the items (one query): item id → [annotator, reason key and text, comment]."""
    rows = session.execute(
        select(Assignment.item_id, User.name, Assignment.flag, Assignment.comment)
        .join(User, User.id == Assignment.user_id)
        .where(Assignment.item_id.in_(list(item_ids)), Assignment.flag.is_not(None), Assignment.flag != SKIPPED)
        .order_by(Assignment.submitted_at)).all() if item_ids else []
    out: dict[int, list[dict[str, Any]]] = {}
    for item_id, name, flag, comment in rows:
        out.setdefault(item_id, []).append(
            {"annotator": name, "reason": flag, "text": FLAG_REASONS.get(flag, flag), "comment": comment})
    return out


def item_flags(session: Session, item: Item) -> list[dict[str, Any]]:
    """Flags raised on an item: annotator, reason key and text, comment (for reviewers)."""
    return flags_by_item(session, [item.id]).get(item.id, [])


def review_count(session: Session) -> int:
    """How many items wait for review (the dashboard's figure): one COUNT, no rows loaded."""
    return session.scalar(select(func.count(Item.id)).where(Item.state == "review")) or 0


def review_queue(session: Session, job_id: Optional[int] = None) -> list[Item]:
    query = select(Item).where(Item.state == "review").order_by(Item.job_id, Item.position)
    if job_id is not None:
        query = query.where(Item.job_id == job_id)
    return list(session.scalars(query))


def review_detail(session: Session, item: Item, user: User) -> dict[str, Any]:
    if user.role not in ("admin", "reviewer"):
        raise Forbidden("only reviewers and admins see the answers of annotators")
    return {"item_id": item.id, "job_id": item.job_id, "position": item.position, "state": item.state,
            "agreement": item.agreement, "consolidated": item.consolidated, "final": item.final,
            "flags": item_flags(session, item),
            "answers": [{"annotator": name, "answer": answer} for name, answer, _ in item_answers(session, item)]}


def review_decide(session: Session, item: Item, reviewer: User, action: str,
                  answer: Any = None, now: Optional[dt.datetime] = None) -> Item:
    if reviewer.role not in ("admin", "reviewer"):
        raise Forbidden("only reviewers and admins decide reviews")
    # populate_existing: the caller loaded this row before the lock; decide on what the lock sees
    item = session.scalars(select(Item).where(Item.id == item.id).with_for_update().execution_options(populate_existing=True)).one()
    if item.state != "review":
        raise Conflict(f"item {item.id}: not waiting for review (state {item.state})")
    job = get_job(session, item.job_id)
    if action == "accept":
        if item.consolidated is None:
            raise Conflict(f"item {item.id}: nothing consolidated to accept (it was flagged); edit or exclude it")
        final = dict(item.consolidated)
    elif action == "edit":
        edited = validate_answer(job_schema(job), answer, image=item_geometry(item))
        unsure = [e["name"] for e in edited["labels"] if e.get("uncertain")]
        if unsure:  # the final label goes to the output manifest, which says present or absent
            raise Invalid(f"answer: labels: {unsure} left uncertain; a review decides present or absent")
        consolidated = item.consolidated or {}
        final = {"labels": [dict(e, confidence=1.0) for e in edited["labels"]],
                 "rois": [dict(r, confidence=1.0) for r in edited["rois"]],
                 "image": edited.get("image") or consolidated.get("image"),
                 "annotators": consolidated.get("annotators"),
                 "agreement": consolidated.get("agreement")}
        final = {k: v for k, v in final.items() if v is not None}
    elif action == "exclude":
        final = None  # not exported: the export counts it as excluded
    elif action == "reopen":
        # The flag was wrong: the item goes back to the annotators' queue; the flags become skips, so
        # their slots return to others (the flagging annotators are not offered it again).
        returned = session.execute(
            update(Assignment).where(Assignment.item_id == item.id, Assignment.flag.is_not(None),
                                     Assignment.flag != SKIPPED).values(flag=SKIPPED).returning(Assignment.id)
        ).scalars().all()
        item.open_slots += len(returned)
        item.state = "open"
        item.reviewed_by, item.reviewed_at = reviewer.id, now or utcnow()
        return item
    else:
        raise Invalid(f"review action {action!r}: expected accept, edit, exclude or reopen")
    item.final = final
    item.state = "done"
    item.reviewed_by = reviewer.id
    item.reviewed_at = now or utcnow()
    return item
