"""One annotator's answer checked against the job's schema and the item's recorded geometry, and the
viewer's initial answer (rules: :mod:`labeling.portal.jobs`)."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from labeling.consolidation.consistency import contradictions
from labeling.contracts.answer import parse_answer
from labeling.contracts.errors import ContractError
from labeling.contracts.geometry import ImageGeometry
from labeling.contracts.manifest_line import GEOMETRY_KEYS
from labeling.contracts.schema import LabelSchema
from labeling.portal import series
from labeling.portal.errors import Invalid
from labeling.portal.models import Item


def validate_answer(schema: LabelSchema, raw: Any, *, image: Optional[Mapping[str, Any]] = None,
                    require_all: bool = True) -> dict[str, Any]:
    """One annotator's answer checked against the schema and, when ``image`` gives ``rows`` and
    ``columns`` (the item's geometry recorded from Orthanc at job creation, :func:`item_geometry`),
    against the image by the label contract (:func:`labeling.contracts.answer.parse_answer`: image
    size, frame in range, ROI points inside, bounded ROIs and points); an ROI of a label the answer
    marks absent is refused (:mod:`labeling.consolidation.consistency`). Returns the canonical label
    shape, with ``image`` filled in from the geometry when the answer left it out."""
    names = list(schema.label_names)
    geometry = None
    if image and image.get("rows") and image.get("columns"):
        # a consolidated image names its frame, not the frame count: frames up to it are allowed
        frames = image.get("frames") or int(image.get("frame") or 0) + 1
        geometry = ImageGeometry(int(image["rows"]), int(image["columns"]), int(frames))
    try:
        parsed = parse_answer(raw, names, geometry=geometry)
    except ContractError as exc:
        raise Invalid(f"answer: {exc}") from None
    if parsed.rois and not schema.has_rois:
        raise Invalid(f"answer: rois: schema {schema.name!r} is classification only")
    for index, roi in enumerate(parsed.rois):
        allowed = schema.label(roi.label).shapes
        if roi.shape not in allowed:
            raise Invalid(f"answer: rois[{index}].shape: {roi.shape!r} is not allowed for label "
                          f"{roi.label!r} (allowed: {', '.join(allowed)})")
    for index in contradictions(parsed.labels, [roi.label for roi in parsed.rois]):
        label = parsed.rois[index].label
        raise Invalid(f"answer: rois[{index}]: an ROI of {label!r}, which this answer marks absent "
                      f"(mark {label!r} present or remove the ROI)")
    if parsed.uncertain and not schema.uncertain:
        raise Invalid(f"answer: labels: {list(parsed.uncertain)} answered 'uncertain', which schema "
                      f"{schema.name!r} does not offer (present or absent)")
    if require_all and schema.has_classification and schema.required.labels:
        missing = [name for name in names if name not in parsed.labels and name not in parsed.uncertain]
        if missing:
            raise Invalid(f"answer: labels: no {'present/absent/uncertain' if schema.uncertain else 'present/absent'} "
                          f"answer for {missing}")
    out: dict[str, Any] = {
        # schema order; an uncertain label keeps its entry (no vote in consolidation, shown to reviewers)
        "labels": [{"name": n, "present": parsed.labels[n]} if n in parsed.labels else {"name": n, "uncertain": True}
                   for n in names if n in parsed.labels or n in parsed.uncertain],
        # the contract's ROI form, less the annotator's own confidence (consolidation sets that);
        # a series answer's instance/frame stay with each ROI
        "rois": [{k: v for k, v in r.to_dict().items() if k != "confidence"} for r in parsed.rois],
    }
    if parsed.image is not None:
        out["image"] = parsed.image.to_dict()
    elif geometry is not None:
        out["image"] = {"rows": geometry.rows, "columns": geometry.columns, "frame": 0}
    if series.is_series(image):
        series.check_rois_on_slices(out, image)  # each ROI on one of the item's slices
    return out


def item_geometry(item: Item) -> Optional[dict[str, Any]]:
    """The geometry an item's answers are checked against (:func:`geometry_of`)."""
    return geometry_of(item.geometry, item.line)


def geometry_of(geometry: Optional[dict[str, Any]], line: Optional[Mapping[str, Any]]) -> Optional[dict[str, Any]]:
    """Recorded from Orthanc at job creation, else (jobs created before revision 0002) the manifest
    line's own geometry keys, if any."""
    return geometry or ({k: line[k] for k in GEOMETRY_KEYS if k in line} or None if line else None)


def as_single_answer(content: Optional[Mapping[str, Any]]) -> Optional[dict[str, Any]]:
    """A consolidated ``<attr>`` content reduced to one answer (for the viewer's ``initialAnswer``)."""
    if not content:
        return None
    out = {"labels": [{"name": e["name"], "present": e["present"]} for e in content.get("labels", [])],
           "rois": [{k: r[k] for k in ("label", "shape", "points", "instance", "frame") if k in r}
                    for r in content.get("rois", [])]}  # a series ROI keeps its slice
    if content.get("image"):
        out["image"] = content["image"]
    return out


def prelabel_for(line: Mapping[str, Any]) -> Optional[dict[str, Any]]:
    """A manifest line's ``prelabel`` as the viewer's initial answer."""
    raw = line.get("prelabel")
    if not isinstance(raw, Mapping):
        return None
    return as_single_answer({"labels": [e for e in raw.get("labels", []) if isinstance(e, Mapping)],
                             "rois": [r for r in raw.get("rois", []) if isinstance(r, Mapping)],
                             "image": raw.get("image")})
