"""Series and multi-frame tasks: order the slices of a series by geometry, flag what is odd.

A *series task* is one labeling task over a whole CT/MR series (its single-frame slices, in
anatomical order) and a *multi-frame task* one over one multi-frame instance (its frames, in file
order). This module is pure: it takes per-instance metadata (:class:`SliceInfo`, read from Orthanc by
the manifest builder, :mod:`labeling.manifest.build`) and returns :class:`SeriesTask` values; it never
reorders silently and never drops a slice.

Geometry (PS3.3 C.7.6.2 "Image Plane Module")
=============================================
* ImageOrientationPatient (0020,0037) holds the row direction cosines ``r`` (first three values)
  and the column direction cosines ``c`` (last three); the slice **normal** is ``n = r x c``
  (PS3.3 C.7.6.2.1.1).
* ImagePositionPatient (0020,0032) is the patient-space position (mm) of the centre of the first
  transmitted voxel; a slice's **position along the normal** is ``d = n . IPP``. Slices are ordered
  by increasing ``d`` (for an axial series with the usual orientation ``1\\0\\0\\0\\1\\0``, ``n`` is
  ``+z``: inferior to superior), the convention of ITK/GDCM's series sorters and the order
  Orthanc's own ``/series/{id}/ordered-slices`` gives (an integration test compares them).
* PixelSpacing (0028,0030) is ``row spacing \\ column spacing`` (mm between the centres of adjacent
  rows, then of adjacent columns; PS3.3 10.7.1.3).
* The **slice spacing** reported is the median of the gaps between consecutive positions; it is
  the distance between slice centres, which SliceThickness (0018,0050) is not required to equal.

Fallback and flags
==================
When every slice has an ImagePositionPatient and all share one ImageOrientationPatient (within
``1e-4`` per cosine), the order is by position (``geometry.order = "position"``). Otherwise it is by
InstanceNumber (0020,0013), stated as ``order = "instance_number"``; slices without one go last,
by Orthanc ID (``order = "instance_number"`` still, flagged ``no-instance-number``). Flags (each
``{"code", "message", ...}``) never change the order; they report:

=======================  ============================================================================
``mixed-orientation``    the slices do not share one orientation (a localizer in the series, a
                         reformat mixed with the source...): ordered by InstanceNumber instead
``no-position``          some slices lack ImagePositionPatient/ImageOrientationPatient: ordered by
                         InstanceNumber instead (not raised for a one-image series: a radiograph)
``no-instance-number``   the InstanceNumber fallback found slices without a number
``duplicate-position``   two or more slices at the same position (|d1 - d2| < 1e-3 mm): kept, both
``gap``                  a gap between neighbours deviates from the median spacing by more than
                         ``gap_tolerance`` (default 10 %) of it: a missing slice, or a mix of spacings
``mixed-size``           the slices do not all have the same Rows/Columns/PixelSpacing
=======================  ============================================================================

Multi-frame instances (NumberOfFrames > 1) are never merged into a series task: each gets its own
task, frames in file order (0-based indices ``0 .. N-1``, as the label contract's ``frame``). When
the per-frame positions are known (Enhanced IODs' Per-frame Functional Groups, PS3.3 C.7.6.16,
Plane Position (Patient) C.7.6.16.2.3) they are reported and checked for gaps and duplicates like a
series' slices, and flagged ``frames-not-monotonic`` if they do not progress along the normal.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Optional

Vector = tuple[float, float, float]

ORIENTATION_TOLERANCE: Final = 1e-4
"""Largest difference per direction cosine for two slices to count as the same orientation."""
DUPLICATE_TOLERANCE_MM: Final = 1e-3
DEFAULT_GAP_TOLERANCE: Final = 0.10
LEVEL_SERIES: Final = "series"
LEVEL_MULTIFRAME: Final = "multiframe"


class SeriesError(ValueError):
    """Metadata that cannot describe a slice; the message names the instance and the tag."""


@dataclass(frozen=True)
class SliceInfo:
    """What ordering needs of one instance (all optional but the Orthanc ID: DICOM allows much
    to be missing, and the result says what was)."""

    instance_id: str
    sop_instance_uid: Optional[str] = None
    position: Optional[Vector] = None                 # ImagePositionPatient, mm
    orientation: Optional[tuple[float, ...]] = None  # ImageOrientationPatient, 6 cosines
    instance_number: Optional[int] = None
    frames: int = 1                                   # NumberOfFrames
    rows: Optional[int] = None
    columns: Optional[int] = None
    pixel_spacing: Optional[tuple[float, float]] = None  # row spacing, column spacing (mm)
    frame_positions: Optional[tuple[Vector, ...]] = None  # multi-frame: per-frame IPP

    def __post_init__(self) -> None:
        if not isinstance(self.instance_id, str) or not self.instance_id:
            raise SeriesError(f"instance_id: expected a non-empty string, got {self.instance_id!r}")
        if self.orientation is not None and len(self.orientation) != 6:
            raise SeriesError(f"instance {self.instance_id}: ImageOrientationPatient has "
                              f"{len(self.orientation)} values, expected 6")
        if self.orientation is not None and not _has_normal(self.orientation):
            raise SeriesError(f"instance {self.instance_id}: ImageOrientationPatient {list(self.orientation)}: "
                              "row and column directions are parallel (or zero)")
        if self.position is not None and len(self.position) != 3:
            raise SeriesError(f"instance {self.instance_id}: ImagePositionPatient has "
                              f"{len(self.position)} values, expected 3")
        if isinstance(self.frames, bool) or not isinstance(self.frames, int) or self.frames < 1:
            raise SeriesError(f"instance {self.instance_id}: NumberOfFrames must be >= 1, got {self.frames!r}")

    @classmethod
    def from_tags(cls, instance_id: str, tags: Mapping[str, Any]) -> SliceInfo:
        """From Orthanc's tag maps (``MainDicomTags`` and/or ``simplified-tags``: backslash-separated
        strings or lists). Unparseable values count as missing, never as zero."""
        frame_positions = None
        per_frame = tags.get("PerFrameFunctionalGroupsSequence")
        if isinstance(per_frame, list) and per_frame:
            found = [_numbers(_nested(item, "PlanePositionSequence", "ImagePositionPatient"), 3)
                     for item in per_frame]
            if all(p is not None for p in found):
                frame_positions = tuple(found)  # type: ignore[arg-type]
        orientation = _numbers(tags.get("ImageOrientationPatient"), 6)  # degenerate ones: as missing, below
        spacing = _numbers(tags.get("PixelSpacing"), 2)
        shared = tags.get("SharedFunctionalGroupsSequence")
        if orientation is None and isinstance(shared, list) and shared:
            orientation = _numbers(_nested(shared[0], "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
        if spacing is None and isinstance(shared, list) and shared:
            spacing = _numbers(_nested(shared[0], "PixelMeasuresSequence", "PixelSpacing"), 2)
        if orientation is not None and not _has_normal(orientation):
            orientation = None
        return cls(
            instance_id=instance_id,
            sop_instance_uid=tags.get("SOPInstanceUID") or None,
            position=_numbers(tags.get("ImagePositionPatient"), 3),  # type: ignore[arg-type]
            orientation=orientation,
            instance_number=int_or_none(tags.get("InstanceNumber")),
            frames=int_or_none(tags.get("NumberOfFrames")) or 1,
            rows=int_or_none(tags.get("Rows")),
            columns=int_or_none(tags.get("Columns")),
            pixel_spacing=spacing,  # type: ignore[arg-type]
            frame_positions=frame_positions,
        )


_TAG_KEYWORDS: Final = ("SOPInstanceUID", "ImagePositionPatient", "ImageOrientationPatient", "InstanceNumber",
                        "NumberOfFrames", "Rows", "Columns", "PixelSpacing", "SharedFunctionalGroupsSequence",
                        "PerFrameFunctionalGroupsSequence")


def dataset_tags(ds: Any) -> dict[str, Any]:
    """The tags :meth:`SliceInfo.from_tags` reads, from a pydicom dataset (sequences as lists of
    dicts, multi-values as lists: the shape of Orthanc's ``simplified-tags``)."""
    from pydicom.dataset import Dataset
    from pydicom.multival import MultiValue
    from pydicom.sequence import Sequence as DicomSequence

    def plain(value: Any) -> Any:
        if isinstance(value, DicomSequence):
            return [{element.keyword: plain(element.value) for element in item if element.keyword}
                    for item in value if isinstance(item, Dataset)]
        if isinstance(value, MultiValue):
            return [plain(v) for v in value]
        return value

    return {key: plain(ds[key].value) for key in _TAG_KEYWORDS if key in ds}


@dataclass(frozen=True)
class SeriesTask:
    """One task: ``level`` ``series`` (``source`` = the Orthanc series ID, ``instances`` ordered) or
    ``multiframe`` (``source`` = the Orthanc instance ID, one instance, ``frames`` of it)."""

    source: str
    level: str
    instances: tuple[str, ...]
    frames: int
    geometry: Mapping[str, Any]
    flags: tuple[Mapping[str, Any], ...] = field(default=())

    @property
    def flag_codes(self) -> tuple[str, ...]:
        return tuple(flag["code"] for flag in self.flags)

    def to_dict(self) -> dict[str, Any]:
        """The task's keys of a manifest line (see README, "Series tasks")."""
        return {"level": self.level, "instances": list(self.instances), "frames": self.frames,
                "geometry": dict(self.geometry), "flags": [dict(flag) for flag in self.flags]}


# ------------------------------------------------------------------------------------ parsing


def int_or_none(value: Any) -> Optional[int]:
    """An IS value (PS3.5 6.2: a string that may be padded, or "1.0" from sloppy writers) as an int."""
    try:
        return int(float(str(value).strip()))
    except (TypeError, ValueError):
        return None


def _numbers(value: Any, count: int) -> Optional[tuple[float, ...]]:
    """A DS multi-value (``"1\\2\\3"`` or a list) of exactly ``count`` finite numbers, else None."""
    if value is None:
        return None
    parts = value.split("\\") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else None
    if parts is None or len(parts) != count:
        return None
    try:
        out = tuple(float(str(p).strip()) for p in parts)
    except ValueError:
        return None
    return out if all(math.isfinite(x) for x in out) else None


def _nested(item: Any, sequence: str, tag: str) -> Any:
    if not isinstance(item, Mapping):
        return None
    inner = item.get(sequence)
    if isinstance(inner, list) and inner and isinstance(inner[0], Mapping):
        return inner[0].get(tag)
    return None


# ----------------------------------------------------------------------------------- geometry


def _cross(orientation: Sequence[float]) -> tuple[Vector, float]:
    r, c = orientation[:3], orientation[3:]
    n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    return n, math.sqrt(sum(x * x for x in n))


def _has_normal(orientation: Sequence[float]) -> bool:
    return _cross(orientation)[1] >= 1e-6


def slice_normal(orientation: Sequence[float]) -> Vector:
    """``row cosines x column cosines`` (PS3.3 C.7.6.2.1.1), normalised."""
    n, length = _cross(orientation)
    if length < 1e-6:
        raise SeriesError(f"ImageOrientationPatient {list(orientation)}: row and column directions are parallel")
    return (n[0] / length, n[1] / length, n[2] / length)


def _along(normal: Vector, position: Sequence[float]) -> float:
    return sum(a * b for a, b in zip(normal, position))


def _same_orientation(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(abs(x - y) <= ORIENTATION_TOLERANCE for x, y in zip(a, b))


def _flag(code: str, message: str, **details: Any) -> dict[str, Any]:
    return {"code": code, "message": message, **details}


def _spacing_flags(positions: Sequence[float], gap_tolerance: float, what: str) -> tuple[Optional[float], list[dict]]:
    """Median spacing of consecutive ``positions`` and the duplicate/gap flags (indices 0-based)."""
    gaps = [b - a for a, b in zip(positions, positions[1:])]
    flags: list[dict] = []
    duplicates = [i for i, g in enumerate(gaps) if abs(g) < DUPLICATE_TOLERANCE_MM]
    if duplicates:
        flags.append(_flag("duplicate-position",
                           f"{len(duplicates)} pair(s) of {what}s at the same position (kept both): "
                           f"{what}s {', '.join(f'{i}/{i + 1}' for i in duplicates[:5])}",
                           pairs=[[i, i + 1] for i in duplicates]))
    real = [abs(g) for g in gaps if abs(g) >= DUPLICATE_TOLERANCE_MM]
    if not real:
        return None, flags
    spacing = statistics.median(real)
    odd = [i for i, g in enumerate(gaps)
           if abs(g) >= DUPLICATE_TOLERANCE_MM and abs(abs(g) - spacing) > gap_tolerance * spacing]
    if odd:
        flags.append(_flag("gap",
                           f"{len(odd)} spacing(s) differ from the median {spacing:.4g} mm by more than "
                           f"{gap_tolerance:.0%}: " + ", ".join(f"{what}s {i}/{i + 1}: {abs(gaps[i]):.4g} mm"
                                                                for i in odd[:5]),
                           pairs=[[i, i + 1] for i in odd], spacing_mm=[round(abs(gaps[i]), 4) for i in odd]))
    return spacing, flags


def _common(values: Sequence[Any]) -> Any:
    """The value all share, or None when they differ or none is known."""
    known = [v for v in values if v is not None]
    return known[0] if known and all(v == known[0] for v in known) else None


def _base_geometry(slices: Sequence[SliceInfo], orientation: Optional[Sequence[float]]) -> tuple[dict, list[dict]]:
    rows, columns = _common([s.rows for s in slices]), _common([s.columns for s in slices])
    spacing = _common([s.pixel_spacing for s in slices])
    flags: list[dict] = []
    for name, values in (("Rows", [s.rows for s in slices]), ("Columns", [s.columns for s in slices]),
                         ("PixelSpacing", [s.pixel_spacing for s in slices])):
        if len({v for v in values if v is not None}) > 1:
            flags.append(_flag("mixed-size", f"the slices do not share one {name}: "
                                             f"{sorted({str(v) for v in values if v is not None})[:4]}"))
    geometry: dict[str, Any] = {"rows": rows, "columns": columns,
                                "pixel_spacing": list(spacing) if spacing else None,
                                "orientation": list(orientation) if orientation else None}
    return geometry, flags


# -------------------------------------------------------------------------------------- tasks


def order_series(series_id: str, slices: Sequence[SliceInfo], *,
                 gap_tolerance: float = DEFAULT_GAP_TOLERANCE) -> SeriesTask:
    """One ``series`` task over single-frame ``slices`` (any order in), ordered as the module says.

    ``geometry``: ``rows``, ``columns``, ``pixel_spacing`` (row, column; mm), ``orientation`` (6
    cosines), ``normal``, ``order`` (``position`` | ``instance_number``), ``slice_positions`` (mm
    along the normal, ordered; None where unknown), ``spacing`` (median slice spacing, mm; None
    with fewer than two distinct positions), ``origin`` (the first slice's ImagePositionPatient).
    """
    if not slices:
        raise SeriesError(f"series {series_id}: no instances to order")
    if not 0 < gap_tolerance < 1:
        raise ValueError(f"gap_tolerance must be in (0, 1), got {gap_tolerance}")
    flags: list[dict] = []
    orientations = [s.orientation for s in slices]
    complete = all(s.position is not None and s.orientation is not None for s in slices)
    first = next((o for o in orientations if o is not None), None)
    uniform = first is not None and all(o is None or _same_orientation(o, first) for o in orientations)
    if not uniform and first is not None:
        distinct = []
        for o in orientations:
            if o is not None and not any(_same_orientation(o, d) for d in distinct):
                distinct.append(o)
        flags.append(_flag("mixed-orientation",
                           f"{len(distinct)} different ImageOrientationPatient values in one series; "
                           "ordered by InstanceNumber, not by position"))
    if not complete and len(slices) > 1:  # one image (a radiograph): there is no order to lose
        missing = sum(1 for s in slices if s.position is None or s.orientation is None)
        flags.append(_flag("no-position", f"{missing} of {len(slices)} instances have no ImagePositionPatient/"
                                          "ImageOrientationPatient; ordered by InstanceNumber"))

    normal = slice_normal(first) if first is not None and uniform else None
    if complete and uniform:
        assert normal is not None
        # stable on ties: duplicates keep their InstanceNumber order, then Orthanc ID
        keyed = sorted(slices, key=lambda s: (_along(normal, s.position), _number_key(s)))  # type: ignore[arg-type]
        order = "position"
    else:
        keyed = sorted(slices, key=_number_key)
        order = "instance_number"
        unnumbered = sum(1 for s in slices if s.instance_number is None)
        if unnumbered and len(slices) > 1:
            flags.append(_flag("no-instance-number", f"{unnumbered} instances have no InstanceNumber; "
                                                      "placed last, by Orthanc ID"))
    positions = [(_along(normal, s.position) if normal is not None and s.position is not None else None)
                 for s in keyed]
    spacing = None
    if all(p is not None for p in positions) and len(positions) > 1:
        spacing, spacing_flags = _spacing_flags(positions, gap_tolerance, "slice")  # type: ignore[arg-type]
        flags += spacing_flags
    geometry, size_flags = _base_geometry(keyed, first if uniform else None)
    flags += size_flags
    geometry.update({
        "normal": [round(x, 6) for x in normal] if normal else None,
        "order": order,
        "slices": len(keyed),
        "slice_positions": [round(p, 4) if p is not None else None for p in positions],
        "spacing": round(spacing, 4) if spacing is not None else None,
        "origin": list(keyed[0].position) if keyed[0].position else None,
    })
    return SeriesTask(source=series_id, level=LEVEL_SERIES, instances=tuple(s.instance_id for s in keyed),
                      frames=len(keyed), geometry=geometry, flags=tuple(flags))


def _number_key(s: SliceInfo) -> tuple:
    return (s.instance_number is None, s.instance_number or 0, s.instance_id)


def multiframe_task(instance: SliceInfo, *, gap_tolerance: float = DEFAULT_GAP_TOLERANCE) -> SeriesTask:
    """One ``multiframe`` task: the instance's frames in file order (see the module docstring).

    ``geometry`` as :func:`order_series`, with ``order = "frame"`` and ``slice_positions`` one per
    frame (None when the per-frame positions are unknown).
    """
    flags: list[dict] = []
    normal = slice_normal(instance.orientation) if instance.orientation else None
    positions: list[Optional[float]] = [None] * instance.frames
    spacing = None
    if normal is not None and instance.frame_positions and len(instance.frame_positions) == instance.frames:
        positions = [_along(normal, p) for p in instance.frame_positions]
        steps = [b - a for a, b in zip(positions, positions[1:])]
        if not (all(s >= 0 for s in steps) or all(s <= 0 for s in steps)):
            flags.append(_flag("frames-not-monotonic", "the frames' positions go back and forth along the "
                                                       "normal; frames kept in file order"))
        spacing, spacing_flags = _spacing_flags(positions, gap_tolerance, "frame")  # type: ignore[arg-type]
        flags += spacing_flags
    elif instance.frame_positions and len(instance.frame_positions) != instance.frames:
        flags.append(_flag("no-position", f"{len(instance.frame_positions)} per-frame positions for "
                                          f"{instance.frames} frames; positions not reported"))
    geometry, size_flags = _base_geometry([instance], instance.orientation)
    flags += size_flags
    geometry.update({
        "normal": [round(x, 6) for x in normal] if normal else None,
        "order": "frame",
        "slices": instance.frames,
        "slice_positions": [round(p, 4) if p is not None else None for p in positions],
        "spacing": round(spacing, 4) if spacing is not None else None,
        "origin": list(instance.frame_positions[0]) if instance.frame_positions else
        (list(instance.position) if instance.position else None),
    })
    return SeriesTask(source=instance.instance_id, level=LEVEL_MULTIFRAME, instances=(instance.instance_id,),
                      frames=instance.frames, geometry=geometry, flags=tuple(flags))


def series_tasks(series_id: str, instances: Sequence[SliceInfo], *,
                 gap_tolerance: float = DEFAULT_GAP_TOLERANCE) -> list[SeriesTask]:
    """The tasks of one series: one per multi-frame instance (by InstanceNumber), then one ``series``
    task over its single-frame instances (if any)."""
    multi = sorted((s for s in instances if s.frames > 1), key=_number_key)
    single = [s for s in instances if s.frames == 1]
    tasks = [multiframe_task(s, gap_tolerance=gap_tolerance) for s in multi]
    if single:
        tasks.append(order_series(series_id, single, gap_tolerance=gap_tolerance))
    return tasks
