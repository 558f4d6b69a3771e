"""Progress: per job (counts, answers, leases, agreement, throughput per annotator) and per annotator."""

from __future__ import annotations

import datetime as dt
import statistics
from typing import Any, Optional, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labeling.portal.leasing import _ITEM_I, open_to_annotator
from labeling.portal.models import Assignment, Item, Job, User, answered


def _rate(durations: list[float], first: Optional[dt.datetime], last: Optional[dt.datetime]) -> dict[str, Any]:
    count = len(durations)
    hours = max(((last - first).total_seconds() if first and last else 0.0), 60.0) / 3600.0
    return {"submitted": count,
            "items_per_hour": round(count / hours, 2) if count else 0.0,
            "median_seconds": round(statistics.median(durations), 1) if durations else None}


def annotator_progress(session: Session, job: Job, user: User) -> dict[str, Any]:
    rows = session.execute(select(Assignment.leased_at, Assignment.submitted_at).where(
        Assignment.job_id == job.id, Assignment.user_id == user.id, answered())).all()
    durations = [(s - l).total_seconds() for l, s in rows]
    first = min((l for l, _ in rows), default=None)
    last = max((s for _, s in rows), default=None)
    remaining = session.scalar(select(func.count(_ITEM_I.id)).where(open_to_annotator(job.id, user.id))) or 0
    return {"annotator": user.name, **_rate(durations, first, last), "available": remaining,
            "finished": len(rows)}


def item_agreements(session: Session, job: Job) -> list[float]:
    """The per-item agreement of a job's consolidated items (the job page's mean and histogram)."""
    return list(session.scalars(select(Item.agreement).where(Item.job_id == job.id, Item.agreement.is_not(None))))


def job_progress(session: Session, job: Job, agreements: Optional[Sequence[float]] = None) -> dict[str, Any]:
    """Counts, answers, leases, agreement and per-annotator throughput; ``agreements``: the job's
    :func:`item_agreements` when the caller has them already."""
    states = dict(session.execute(select(Item.state, func.count(Item.id)).where(Item.job_id == job.id)
                                  .group_by(Item.state)).all())
    total = sum(states.values())
    rows = session.execute(
        select(User.name, Assignment.leased_at, Assignment.submitted_at).join(User, User.id == Assignment.user_id)
        .where(Assignment.job_id == job.id, answered())).all()
    per: dict[str, list[tuple[dt.datetime, dt.datetime]]] = {}
    for name, leased, submitted in rows:
        per.setdefault(name, []).append((leased, submitted))
    annotators = []
    for name in sorted(per):
        pairs = per[name]
        annotators.append({"annotator": name, **_rate([(s - l).total_seconds() for l, s in pairs],
                                                      min(l for l, _ in pairs), max(s for _, s in pairs))})
    leased = session.scalar(select(func.count(Assignment.id)).where(
        Assignment.job_id == job.id, Assignment.submitted_at.is_(None))) or 0
    if agreements is None:
        agreements = item_agreements(session, job)
    report_agreement = (job.report or {}).get("agreement") or {}
    return {
        "job": job.name, "job_id": job.id, "state": job.state, "annotators_per_item": job.annotators_per_item,
        "items": total, "open": states.get("open", 0), "review": states.get("review", 0),
        "done": states.get("done", 0), "answers": len(rows), "answers_needed": total * job.annotators_per_item,
        "leased": leased,
        "agreement": {"items_mean": round(sum(agreements) / len(agreements), 4) if agreements else None,
                      "labels_fleiss_kappa": report_agreement.get("labels_fleiss_kappa"),
                      "rois_mean_iou": report_agreement.get("rois_mean_iou"),
                      "threshold": job.agreement_threshold},
        "annotators": annotators,
    }
