"""Jobs: the list with progress, creation (admin; from an uploaded manifest or an Orthanc query),
progress, pause/resume and close."""

from __future__ import annotations

from typing import Any, Literal, Optional

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from labeling.portal import admin as A
from labeling.portal import jobs as J
from labeling.portal.deps import ID, get_portal, role, tx

router = APIRouter(tags=["jobs"])
admin = role("admin")

class StateIn(BaseModel):
    state: str = Field(pattern="^(active|paused)$")


class QueryIn(BaseModel):
    """The manifest builder's filters (``python -m labeling manifest --modality … --study-date-from …``)."""

    modality: list[str] = Field(default_factory=list, max_length=20, description="e.g. [\"DX\", \"CR\"]")
    study_date_from: Optional[str] = Field(default=None, max_length=10, description="YYYYMMDD or YYYY-MM-DD")
    study_date_to: Optional[str] = Field(default=None, max_length=10)
    patient_id: Optional[str] = Field(default=None, max_length=64, description="Orthanc wildcards * and ? allowed")
    study_uid: list[str] = Field(default_factory=list, max_length=1000)
    series_uid: list[str] = Field(default_factory=list, max_length=1000)
    limit: Optional[int] = Field(default=None, ge=1, le=100_000, description="the first N images in manifest order")
    level: Literal["instance", "series"] = Field(
        default="instance", description="one item per image, or per series / multi-frame instance (manifest --level)")


class JobIn(BaseModel):
    """A job: exactly one schema source (object, file in schemas/, uploaded text) and exactly one of a
    manifest (uploaded, JSON Lines parsed into objects) or an Orthanc query."""

    name: str = Field(min_length=1, max_length=63)
    schema_: Optional[dict[str, Any]] = Field(default=None, alias="schema")
    schema_file: Optional[str] = Field(default=None, max_length=128, description="a file name from GET /api/schemas")
    schema_text: Optional[str] = Field(default=None, max_length=1_000_000, description="uploaded YAML or JSON")
    manifest: Optional[list[dict[str, Any]]] = Field(default=None, min_length=1, max_length=100_000)
    query: Optional[QueryIn] = None
    label_attribute: Optional[str] = Field(default=None, max_length=127)
    annotators_per_item: Optional[int] = Field(default=None, ge=1, le=100)
    lease_seconds: Optional[int] = Field(default=None, ge=1, le=7 * 86400)
    agreement_threshold: Optional[float] = Field(default=None, ge=-1.0, le=1.0)


class JobOut(BaseModel):
    id: int
    name: str
    state: str
    annotators_per_item: int
    mine: Optional[dict[str, Any]] = Field(default=None, description="an annotator's own progress")
    progress: Optional[dict[str, Any]] = Field(default=None, description="the job's progress (admins, reviewers)")


class JobCreated(BaseModel):
    id: int
    name: str
    items: int


class JobState(BaseModel):
    id: int
    state: str


@router.get("/api/jobs", response_model=list[JobOut], response_model_exclude_none=True)
def list_jobs(request: Request, principal: Any = Depends(role())) -> list[JobOut]:
    with tx(request) as session:
        return [JobOut(id=row["job"].id, name=row["job"].name, state=row["job"].state,
                       annotators_per_item=row["job"].annotators_per_item, mine=row.get("mine"),
                       progress=row.get("progress"))
                for row in A.jobs_with_progress(session, principal.user)]


@router.post("/api/jobs", status_code=201, response_model=JobCreated)
def create_job(request: Request, body: JobIn, _: Any = Depends(admin)) -> JobCreated:
    # The guard checked the admin session before this body was read; Orthanc is asked only now.
    portal = get_portal(request)
    settings = portal.settings
    schema, lines, geometry = A.prepare_job(
        portal.images.orthanc(), schema=body.schema_, schema_file=body.schema_file, schema_text=body.schema_text,
        manifest=body.manifest, query=body.query.model_dump() if body.query is not None else None)
    with tx(request) as session:
        job = J.create_job(session, name=body.name, schema=schema, lines=lines, geometry=geometry,
                           label_attribute=body.label_attribute, annotators_per_item=body.annotators_per_item,
                           lease_seconds=body.lease_seconds or settings.lease_seconds,
                           agreement_threshold=(settings.agreement_threshold if body.agreement_threshold is None
                                                else body.agreement_threshold))
        return JobCreated(id=job.id, name=job.name, items=len(lines))


@router.get("/api/jobs/{job_id}/progress")
def progress(request: Request, job_id: int = ID(), principal: Any = Depends(role())) -> dict[str, Any]:
    with tx(request) as session:
        job = J.get_job(session, job_id)
        if principal.user.role == "annotator":
            return J.annotator_progress(session, job, principal.user)
        return J.job_progress(session, job)


@router.post("/api/jobs/{job_id}/state", response_model=JobState)
def set_state(request: Request, body: StateIn, job_id: int = ID(), _: Any = Depends(admin)) -> JobState:
    with tx(request) as session:
        job = J.set_job_state(session, J.get_job(session, job_id), body.state)
        return JobState(id=job.id, state=job.state)


@router.post("/api/jobs/{job_id}/close")
def close(request: Request, job_id: int = ID(), _: Any = Depends(admin)) -> dict[str, Any]:
    """Close the job: the summary of what consolidation decided (counts per outcome)."""
    with tx(request) as session:
        job = J.get_job(session, job_id)
        summary = J.close_job(session, job)
        return {"id": job.id, "state": job.state, **summary}
