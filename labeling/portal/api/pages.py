"""Admin pages: create a job (from an Orthanc query or an uploaded manifest), and the schemas list."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from labeling.portal import admin as A
from labeling.portal.deps import get_portal, role

router = APIRouter()


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
