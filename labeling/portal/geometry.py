"""Each job item's image geometry, read from Orthanc when the job is created.

An answer is checked against the image it was given (:func:`labeling.portal.jobs.validate_answer`):
its ``image`` must name the same Rows (0028,0010) × Columns (0028,0011), its frame must be below
NumberOfFrames (0028,0008; 1 when absent), and every ROI point must lie inside ``[0, columns] ×
[0, rows]`` (pixel coordinates, docs/architecture.md "The label shape"). Manifest lines may lack the
geometry, so job creation reads it per instance (``GET /instances/{id}/simplified-tags``, a few
requests in flight) and refuses a job naming any instance Orthanc does not have, listing the first
IDs. PixelSpacing (0028,0030) or else ImagerPixelSpacing (0018,1164), when present, is kept too so
the viewer can show ROI sizes in millimetres.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from labeling.orthanc.client import OrthancError

PARALLEL_REQUESTS = 4
MISSING_SHOWN = 5


@dataclass
class GeometryResult:
    """``found``: Orthanc ID → {rows, columns, frames[, pixel_spacing]}; ``missing``/``unreadable`` IDs."""

    found: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)


def _int(value: Any) -> Optional[int]:
    try:
        return int(float(str(value).strip()))
    except (TypeError, ValueError):
        return None


def _spacing(tags: dict[str, Any]) -> Optional[list[float]]:
    """(row spacing, column spacing) in mm, PixelSpacing first, then ImagerPixelSpacing."""
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        raw = tags.get(key)
        parts = raw.split("\\") if isinstance(raw, str) else raw if isinstance(raw, list) else None
        try:
            values = [float(p) for p in parts or []]
        except (TypeError, ValueError):
            continue
        if len(values) == 2 and all(v > 0 for v in values):
            return values
    return None


def geometry_from_tags(tags: dict[str, Any]) -> Optional[dict[str, Any]]:
    """{rows, columns, frames[, pixel_spacing]} from simplified tags; None when Rows/Columns are absent."""
    rows, columns = _int(tags.get("Rows")), _int(tags.get("Columns"))
    if not rows or not columns or rows < 1 or columns < 1:
        return None
    out: dict[str, Any] = {"rows": rows, "columns": columns, "frames": max(_int(tags.get("NumberOfFrames")) or 1, 1)}
    spacing = _spacing(tags)
    if spacing:
        out["pixel_spacing"] = spacing
    return out


def collect(entries: Sequence[Any], read: Callable[[Any], tuple[str, Optional[dict[str, Any]], Optional[str]]],
            progress: Optional[Callable[[int, int], None]] = None) -> GeometryResult:
    """``read(entry)`` → (source, geometry, problem) for every entry, a few in flight: geometry found,
    or (None, None) absent from Orthanc, or (None, what is wrong)."""
    result = GeometryResult()
    with ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS) as pool:
        for done, (source, geometry, problem) in enumerate(pool.map(read, entries), start=1):
            if geometry is not None:
                result.found[source] = geometry
            elif problem is None:
                result.missing.append(source)
            else:
                result.unreadable[source] = problem
            if progress:
                progress(done, len(entries))
    return result


def read_geometry(orthanc: Any, sources: Sequence[str],
                  progress: Optional[Callable[[int, int], None]] = None) -> GeometryResult:
    """The geometry of every instance in ``sources`` (Orthanc IDs); absent ones listed as missing."""

    def read(source: str) -> tuple[str, Optional[dict[str, Any]], Optional[str]]:
        try:
            tags = orthanc.instance_tags(source)
        except OrthancError as exc:
            if exc.status == 404:
                return source, None, None
            return source, None, str(exc)
        geometry = geometry_from_tags(tags)
        return source, geometry, None if geometry else "no Rows/Columns (not an image)"

    return collect(sources, read, progress)


def require_all(result: GeometryResult, total: int) -> dict[str, dict[str, Any]]:
    """``result.found`` when every instance was read; otherwise one message naming the first bad IDs."""
    from labeling.portal.jobs import Invalid

    problems = []
    if result.missing:
        shown = ", ".join(result.missing[:MISSING_SHOWN])
        more = f" and {len(result.missing) - MISSING_SHOWN} more" if len(result.missing) > MISSING_SHOWN else ""
        problems.append(f"{len(result.missing)} of {total} instances are not in Orthanc: {shown}{more}")
    if result.unreadable:
        first = list(result.unreadable.items())[:MISSING_SHOWN]
        problems.append(f"{len(result.unreadable)} of {total} instances could not be read: "
                        + "; ".join(f"{i}: {why}" for i, why in first))
    if problems:
        raise Invalid("manifest: " + "; ".join(problems) + " (nothing created)")
    return result.found


def checked_geometry(orthanc: Any, sources: Sequence[str],
                     progress: Optional[Callable[[int, int], None]] = None) -> dict[str, dict[str, Any]]:
    """What job creation passes to :func:`labeling.portal.jobs.create_job`: every source's geometry,
    or :class:`~labeling.portal.jobs.Invalid` naming the first instances Orthanc lacks."""
    from labeling.portal.jobs import check_source

    for number, source in enumerate(sources, start=1):
        check_source(number, source)  # no malformed ID goes into an Orthanc URL
    return require_all(read_geometry(orthanc, sources, progress), len(sources))
