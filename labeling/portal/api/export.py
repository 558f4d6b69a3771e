"""Export (admin): the output manifest written to S3 or the cache directory, its download, and the
DICOM SR write-back into Orthanc."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from labeling.portal import jobs as J
from labeling.portal.deps import ID, get_portal, role, tx
from labeling.portal.export import export_destination, export_manifest, export_sr, manifest_text

router = APIRouter(tags=["export"])
admin = role("admin")


class ExportIn(BaseModel):
    include_review: bool = False


class ExportOut(BaseModel):
    destination: str
    written: int
    left_out_review: int
    left_out_open: int
    left_out_excluded: int
    download: str = Field(description="the portal URL of the same manifest")


class SrOut(BaseModel):
    stored: dict[str, str] = Field(description="item id → the Orthanc instance id of its SR")
    errors: list[str]


@router.post("/api/jobs/{job_id}/export", response_model=ExportOut)
def export(request: Request, job_id: int = ID(), body: ExportIn = Body(default_factory=ExportIn),
           _: Any = Depends(admin)) -> ExportOut:
    portal = get_portal(request)
    with tx(request) as session:
        job = J.get_job(session, job_id)
        result = export_manifest(session, job, export_destination(portal.settings, job),
                                 include_review=body.include_review, s3_client=portal.s3_client,
                                 kms_key_id=portal.settings.export_kms_key_id)
        return ExportOut(destination=result.destination, written=result.written,
                         left_out_review=result.left_out_review, left_out_open=result.left_out_open,
                         left_out_excluded=result.left_out_excluded,
                         download=portal.url(f"/api/jobs/{job.id}/output.manifest"))


@router.get("/api/jobs/{job_id}/output.manifest", responses={200: {"content": {"application/jsonlines": {}}}})
def download(request: Request, job_id: int = ID(), _: Any = Depends(admin)) -> Response:
    with tx(request) as session:
        job = J.get_job(session, job_id)
        body = manifest_text(session, job)
    return Response(body, media_type="application/jsonlines",
                    headers={"Content-Disposition": f'attachment; filename="{job.name}.manifest"'})


@router.post("/api/jobs/{job_id}/sr", response_model=SrOut)
def sr(request: Request, job_id: int = ID(), _: Any = Depends(admin)) -> SrOut:
    with tx(request) as session:
        job = J.get_job(session, job_id)
        result = export_sr(session, job, get_portal(request).images.orthanc())
        return SrOut(stored={str(k): v for k, v in result.stored.items()}, errors=result.errors)
