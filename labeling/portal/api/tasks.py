"""Annotator tasks: take the next image (lease), read it back, answer, skip, flag."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError, OperationalError

from labeling.portal import jobs as J, series
from labeling.portal.db import driver_transaction
from labeling.portal.deps import ID, get_portal, in_thread, role, tx
from labeling.portal.models import Job
from labeling.portal.security import prefetch_token

router = APIRouter(tags=["tasks"])
annotator = role("annotator")


class AnswerIn(BaseModel):
    annotation: Any = Field(description="one annotator's answer in the label shape (object or its JSON text)")


class FlagIn(BaseModel):
    reason: str = Field(description="unreadable | wrong-body-part | burned-in-phi | other")
    comment: str = Field(default="", max_length=1000, description="required when the reason is 'other'")


def _retryable(exc: Exception) -> bool:
    """Deadlock (40P01), serialization failure (40001) or unique violation (23505): safe to retry."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in ("40P01", "40001", "23505")


def task_json(request: Request, task: J.Task, job: Job | J.JobRef, principal: Any) -> dict[str, Any]:
    portal = get_portal(request)
    # The likely next image, for the browser to fetch into its cache once this one shows: the same
    # URL the next task will name, readable early only with this token (bound to session and item).
    prefetch = None if task.upcoming_item is None else {
        "image_url": portal.url(f"/api/items/{task.upcoming_item}/image"),
        "token": prefetch_token(portal.secret, principal.csrf_key, task.upcoming_item)}
    return {"assignment_id": task.assignment_id, "item_id": task.item_id, "job_id": job.id, "job": job.name,
            "position": task.position, "total": task.total,
            "pixel_spacing": (task.geometry or {}).get("pixel_spacing"),
            "image_url": portal.url(f"/api/items/{task.item_id}/image"), "prefetch": prefetch, "schema": job.schema,
            "initialAnswer": J.prelabel_for(task.line),
            "lease_expires_at": task.lease_expires_at.isoformat(), "submitted": task.submitted,
            **series.task_fields(portal.url, task.item_id, task.geometry)}  # a series: its slices


@router.post("/api/jobs/{job_id}/next")
async def next_task(request: Request, job_id: int = ID(), principal: Any = Depends(annotator)) -> Response:
    return await in_thread(_next_task, request, job_id, principal)


def _next_task(request: Request, job_id: int, principal: Any) -> Response:
    portal = get_portal(request)
    for attempt in range(3):
        try:
            job, task = J.lease_and_fetch(portal.engine, portal.factory, job_id, principal.user)
            if task is None:
                return JSONResponse({"done": True, "detail": "no more items for you in this job"})
            break
        except (OperationalError, IntegrityError) as exc:
            # A deadlock between two assigners expiring leases, or the same annotator asking from
            # two tabs (UNIQUE(item, user)): the transaction rolled back whole; try again.
            if attempt == 2 or not _retryable(exc):
                raise
    # Prefetch: the leased image (the viewer asks for it next) and the likely next one; a series item's
    # slices (a series job's next is a series ID, not an image).
    portal.images.prefetch(series.slice_order(task.geometry) or
                           (task.source,) + (() if task.upcoming is None else (task.upcoming,)))
    return JSONResponse(task_json(request, task, job, principal))


@router.get("/api/assignments/{assignment_id}")
def assignment(request: Request, assignment_id: int = ID(), principal: Any = Depends(annotator)) -> dict[str, Any]:
    with tx(request) as session:
        found = J.get_assignment(session, assignment_id, principal.user)
        job = J.get_job(session, found.job_id)
        task = task_json(request, J.task_of(session, job, principal.user, found), job, principal)
        task["answer"] = found.answer  # the annotator's own answer only
        return task


@router.post("/api/assignments/{assignment_id}/answer")
async def answer(request: Request, body: AnswerIn, assignment_id: int = ID(),
                 principal: Any = Depends(annotator)) -> dict[str, Any]:
    result = await in_thread(_store_answer, request, assignment_id, principal, body.annotation)
    # Blind: the annotator learns that the answer was stored, not what others said.
    return JSONResponse({"assignment_id": result.assignment_id, "item_id": result.item_id, "stored": True})


def _store_answer(request: Request, assignment_id: int, principal: Any, annotation: Any) -> J.SubmitResult:
    with driver_transaction(get_portal(request).engine) as conn:
        return J.submit_answer_on(conn, assignment_id, principal.user, annotation)


@router.post("/api/assignments/{assignment_id}/skip")
def skip(request: Request, assignment_id: int = ID(), principal: Any = Depends(annotator)) -> dict[str, Any]:
    with tx(request) as session:
        skipped = J.skip_task(session, assignment_id, principal.user)
        return {"assignment_id": skipped.id, "skipped": True}


@router.post("/api/assignments/{assignment_id}/flag")
def flag(request: Request, body: FlagIn, assignment_id: int = ID(),
         principal: Any = Depends(annotator)) -> dict[str, Any]:
    with tx(request) as session:
        J.flag_task(session, assignment_id, principal.user, body.reason, body.comment)
        return {"assignment_id": assignment_id, "flagged": body.reason}
