"""Series items: one de-identified slice of an item, to those who may see the item (labeling/portal/series.py)."""

from __future__ import annotations

from fastapi import APIRouter, Path as PathParam, Request
from fastapi.responses import Response

from labeling.portal import series
from labeling.portal.deps import ID, get_portal, principal_of

router = APIRouter(tags=["images"])


@router.get("/api/items/{item_id}/instances/{instance_id}",
            responses={200: {"content": {"application/dicom": {}}}})
def slice_image(request: Request, item_id: int = ID(),
                instance_id: str = PathParam(max_length=64, description="the slice's Orthanc instance ID")) -> Response:
    portal = get_portal(request)
    # As the image route (one request per slice, hundreds per series): authenticated in this worker
    # thread, not a dependency's second hop, and read outside a transaction (no BEGIN/COMMIT).
    principal = principal_of(request)
    with portal.read_factory() as session:
        instance = series.slice_for(session, item_id, instance_id, principal.user)
    # The one image store: the same de-identification (and UID mapping) for every slice of the series.
    return Response(portal.images.get(instance).read_bytes(), media_type="application/dicom",
                    headers={"Cache-Control": "private, max-age=3600"})
