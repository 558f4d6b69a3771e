"""Server-rendered pages: the dashboard, the annotator's labeling page, the job page, the review list
and review page, and the admin's new-job page (with ``GET /api/schemas`` it uses)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from fastapi.responses import HTMLResponse

from labeling.portal import admin as A
from labeling.portal import jobs as J, series
from labeling.portal.deps import ID, get_portal, role, tx
from labeling.portal.models import FLAG_REASONS, Item

router = APIRouter()
staff = role("admin", "reviewer")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def dashboard(request: Request, principal: Any = Depends(role())):
    user = principal.user
    with tx(request) as session:
        rows = A.jobs_with_progress(session, user)
        queue = J.review_count(session) if user.role in ("admin", "reviewer") else 0
        return get_portal(request).page("dashboard.html", principal, rows=rows, queue=queue)


@router.get("/jobs/{job_id}/label", response_class=HTMLResponse, include_in_schema=False)
def task_page(request: Request, job_id: int = ID(), principal: Any = Depends(role("annotator"))):
    portal = get_portal(request)
    with tx(request) as session:
        job = J.get_job(session, job_id)
        return portal.page("task.html", principal, job=job, viewer_sri=portal.viewer_sri(), flag_reasons=FLAG_REASONS,
                           data={"root": portal.root, "job_id": job.id, "csrf": portal.csrf(principal),
                                 "mode": "label"})


@router.get("/jobs/{job_id}", response_class=HTMLResponse, include_in_schema=False)
def job_page(request: Request, job_id: int = ID(), principal: Any = Depends(staff)):
    portal = get_portal(request)
    with tx(request) as session:
        job = J.get_job(session, job_id)
        agreements = J.item_agreements(session, job)  # once, for the mean and the histogram
        first = session.scalars(select(Item.geometry).where(Item.job_id == job.id).limit(1)).first()
        unit = "series" if (first or {}).get("slices") else "image"  # what the page counts
        return portal.page("job.html", principal, job=job, progress=J.job_progress(session, job, agreements),
                           unit=unit,
                           figures=A.job_figures(session, job, agreements), export_bucket=portal.settings.export_bucket,
                           data={"root": portal.root, "job_id": job.id, "csrf": portal.csrf(principal),
                                 "mode": "job"})


@router.get("/review", response_class=HTMLResponse, include_in_schema=False)
def review_list_page(request: Request, principal: Any = Depends(staff)):
    with tx(request) as session:
        items, names, flags = A.review_overview(session)
        return get_portal(request).page("review_list.html", principal, items=items, job_names=names, flags=flags)


@router.get("/review/{item_id}", response_class=HTMLResponse, include_in_schema=False)
def review_page(request: Request, item_id: int = ID(), principal: Any = Depends(staff)):
    portal = get_portal(request)
    with tx(request) as session:
        item = J.get_item_for(session, item_id, principal.user)
        job = J.get_job(session, item.job_id)
        detail = J.review_detail(session, item, principal.user)
        return portal.page("review.html", principal, job=job, item=item, detail=detail,
                           viewer_sri=portal.viewer_sri(),
                           data={"root": portal.root, "item_id": item.id, "position": item.position,
                                 "csrf": portal.csrf(principal), "mode": "review", "schema": job.schema,
                                 "pixel_spacing": (item.geometry or {}).get("pixel_spacing"),
                                 "image_url": portal.url(f"/api/items/{item.id}/image"),
                                 "initialAnswer": J.as_single_answer(item.final or item.consolidated),
                                 "overlays": [{"name": a["annotator"], "answer": a["answer"]}
                                              for a in detail["answers"]],
                                 "state": item.state,
                                 **series.task_fields(portal.url, item.id, item.geometry)})


@router.get("/api/schemas", tags=["jobs"])
def list_schemas(_: Any = Depends(role("admin"))) -> dict[str, Any]:
    """The label schemas shipped in ``schemas/`` (file name → schema), for job creation."""
    return {name: schema.to_dict() for name, schema in A.schema_files().items()}


@router.get("/admin/jobs/new", response_class=HTMLResponse, include_in_schema=False)
def new_job_page(request: Request, principal: Any = Depends(role("admin"))):
    portal = get_portal(request)
    schemas = A.schema_files()
    return portal.page("job_new.html", principal, schemas=schemas,
                       data={"root": portal.root, "csrf": portal.csrf(principal), "mode": "newjob",
                             "lease_seconds": portal.settings.lease_seconds,
                             "agreement_threshold": portal.settings.agreement_threshold})
