"""Series and multi-frame items in the portal (issue 14): job creation, the slice list of a task, who
may read a slice, answers on the item's own slices, consolidation order and the SR.

A manifest line whose ``level`` is ``series`` or ``multiframe`` (``manifest --level series``, README
"Series tasks") is one item: ``source`` is the Orthanc series ID (``series``) or the multi-frame
instance's ID (``multiframe``), ``instances`` its ordered Orthanc instance IDs, ``frames`` the number of
slices. What job creation records in ``items.geometry`` (JSON, so revision 0002's column serves;
no new column) for such an item::

    {"rows", "columns", "pixel_spacing"?,        # the first slice's (Orthanc simplified tags)
     "frames": <number of slices>, "level": "series" | "multiframe",
     "slices": [[<instance id>, <0-based frame>], ...]}   # in the manifest's (anatomical) order

Rules, in one place:

* **Creation** (:func:`checked_line_geometry`): a series must exist in Orthanc and hold every listed
  instance (``GET /series/{id}``); a multi-frame instance must exist and have the line's
  NumberOfFrames. Rows/Columns/PixelSpacing come from the first slice (one read per item, as the
  manifest builder does; the viewer checks each slice it loads). Otherwise the job is refused,
  naming the item, and nothing is created.
* **Delivery**: the task carries ``slices: [{url, instance, frame}]`` (the viewer's stack form),
  each URL the portal's de-identified slice route ``/api/items/{item}/instances/{instance}``
  (:mod:`labeling.portal.api.slices`). It serves an instance only to a user who may see the item
  (its annotators, reviewers, admins; anyone else gets 404, as the image route answers, so item ids
  are not confirmed) and only when the instance is one of the item's slices (403 otherwise). Files
  are de-identified by the one image store: UIDs are replaced by a keyed hash
  (:func:`labeling.dicom.deidentify.uid_for`), so every slice of a series carries the same new
  Study/Series/Frame of Reference UIDs and the viewer stacks them as one series. The item's own
  image route (``/api/items/{item}/image``) serves its first slice.
* **Answers** (:func:`check_rois_on_slices`, called by :func:`labeling.portal.jobs.validate_answer`):
  every ROI names the slice it was drawn on, and that ``(instance, frame)`` must be one of the item's
  slices (422 naming ``rois[i].instance`` or ``rois[i].frame``). The answer's labels are series-level.
* **Consolidation**: per slice (:mod:`labeling.consolidation.slices`), with the item's slice order so
  ``agreement.slices`` can count findings drawn on neighbouring slices (:func:`slice_order`).
* **SR** (:func:`item_sr`): :func:`labeling.dicom.sr.build_series_sr`, each ROI referencing its
  slice (and frame); the evidence is the first slice plus every slice an ROI is on (reading every
  header of a 300-slice series would download every file).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

from labeling.contracts.ids import validate_instance_id
from labeling.dicom.series import LEVEL_MULTIFRAME, LEVEL_SERIES
from labeling.manifest.format import ManifestLine
from labeling.orthanc.client import OrthancError
from labeling.portal.geometry import GeometryResult, collect, geometry_from_tags, read_geometry, require_all

SERIES_LEVELS = (LEVEL_SERIES, LEVEL_MULTIFRAME)
SHOWN = 3


def _invalid(message: str) -> Exception:
    from labeling.portal.jobs import Invalid

    return Invalid(message)


def is_series(data: Optional[Mapping[str, Any]]) -> bool:
    """A series or multi-frame manifest line, or the geometry recorded for such an item."""
    return bool(data) and data.get("level") in SERIES_LEVELS  # type: ignore[union-attr]


def line_slices(number: int, line: Mapping[str, Any]) -> list[tuple[str, int]]:
    """The ``(instance, frame)`` slices of series line ``number``, in its order; Invalid naming the key."""
    where = f"manifest line {number}"
    instances = line.get("instances")
    if not isinstance(instances, list) or not instances:
        raise _invalid(f"{where}: 'instances' must list the {line.get('level')} task's Orthanc instance IDs")
    for index, instance in enumerate(instances):
        try:
            validate_instance_id(instance)
        except (TypeError, ValueError):
            raise _invalid(f"{where}: 'instances'[{index}] {instance!r} is not an Orthanc instance ID") from None
    if len(set(instances)) != len(instances):
        raise _invalid(f"{where}: 'instances' lists an instance twice")
    frames = line.get("frames")
    if line["level"] == LEVEL_MULTIFRAME:
        if instances != [line["source"]]:
            raise _invalid(f"{where}: a multiframe task's 'instances' must be [its source], got {instances[:SHOWN]}")
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise _invalid(f"{where}: 'frames' must be the instance's NumberOfFrames, got {frames!r}")
        return [(line["source"], frame) for frame in range(frames)]
    if frames is not None and frames != len(instances):
        raise _invalid(f"{where}: 'frames' is {frames} but 'instances' lists {len(instances)} slices")
    return [(instance, 0) for instance in instances]


def _series_geometry(orthanc: Any, line: Mapping[str, Any],
                     slices: list[tuple[str, int]]) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """(geometry, None), (None, None) when the source is not in Orthanc, or (None, what is wrong)."""
    source = line["source"]
    try:
        if line["level"] == LEVEL_SERIES:
            members = set(orthanc.series(source).get("Instances") or ())
            outside = [instance for instance, _ in slices if instance not in members]
            if outside:
                return None, (f"{len(outside)} of its {len(slices)} instances are not in this series in Orthanc: "
                              + ", ".join(outside[:SHOWN]))
        tags = orthanc.instance_tags(slices[0][0])
    except OrthancError as exc:
        return (None, None) if exc.status == 404 else (None, str(exc))
    first = geometry_from_tags(tags)
    if first is None:
        return None, "no Rows/Columns (not an image)"
    if line["level"] == LEVEL_MULTIFRAME and first["frames"] != len(slices):
        return None, f"Orthanc's instance has {first['frames']} frames, the line {len(slices)}"
    geometry = {key: first[key] for key in ("rows", "columns", "pixel_spacing") if key in first}
    geometry.update(frames=len(slices), level=line["level"], slices=[[i, f] for i, f in slices])
    return geometry, None


def read_series_geometry(orthanc: Any, lines: Sequence[tuple[int, Mapping[str, Any]]],
                         progress: Optional[Callable[[int, int], None]] = None) -> GeometryResult:
    """The recorded geometry (module docstring) of each numbered series line, keyed by ``source``."""
    checked = [(line, line_slices(number, line)) for number, line in lines]  # malformed lines first, no I/O

    def read(entry: tuple[Mapping[str, Any], list[tuple[str, int]]]) -> tuple[str, Any, Optional[str]]:
        line, slices = entry
        return (line["source"], *_series_geometry(orthanc, line, slices))

    return collect(checked, read, progress)


def checked_line_geometry(orthanc: Any, lines: Sequence[ManifestLine],
                          progress: Optional[Callable[[int, int], None]] = None) -> dict[str, dict[str, Any]]:
    """What job creation passes to :func:`labeling.portal.jobs.create_job`: every line's geometry —
    an image's (:func:`labeling.portal.geometry.read_geometry`) or a series item's (module docstring) —,
    or Invalid naming the first sources Orthanc lacks or that do not match the line."""
    from labeling.portal.jobs import check_source

    series: list[tuple[int, Mapping[str, Any]]] = []
    images: list[str] = []
    for number, line in enumerate(lines, start=1):
        check_source(number, line.source)  # no malformed ID goes into an Orthanc URL
        data = line.to_dict()
        if is_series(data):
            series.append((number, data))
        else:
            images.append(line.source)
    def tick(offset: int) -> Callable[[int, int], None]:
        return lambda done, _total: progress(offset + done, len(lines)) if progress else None

    result = read_geometry(orthanc, images, tick(0)) if images else GeometryResult()
    if series:
        more = read_series_geometry(orthanc, series, tick(len(images)))
        result.found.update(more.found)
        result.missing += more.missing
        result.unreadable.update(more.unreadable)
    return require_all(result, len(lines))


def slice_order(geometry: Optional[Mapping[str, Any]]) -> tuple[str, ...]:
    """A series item's ordered instance IDs (each once); () for an image item."""
    if not is_series(geometry):
        return ()
    return tuple(dict.fromkeys(instance for instance, _ in geometry["slices"]))  # type: ignore[index]


def check_rois_on_slices(answer: Mapping[str, Any], geometry: Mapping[str, Any]) -> None:
    """Every ROI of a validated answer lies on one of the item's slices; Invalid naming the ROI's field."""
    slices = {(instance, frame) for instance, frame in geometry["slices"]}
    instances = {instance for instance, _ in slices}
    for index, roi in enumerate(answer.get("rois") or ()):
        instance, frame = roi.get("instance"), roi.get("frame")
        if instance is None:
            raise _invalid(f"answer: rois[{index}].instance: required on a {geometry['level']} item "
                           "(the Orthanc instance ID of the slice the ROI was drawn on)")
        if instance not in instances:
            raise _invalid(f"answer: rois[{index}].instance: {instance!r} is not one of this item's "
                           f"{len(instances)} instances")
        if (instance, frame or 0) not in slices:
            raise _invalid(f"answer: rois[{index}].frame: instance {instance!r} has no frame {frame} in this item")


def slice_url(item_id: int, instance: str) -> str:
    """The portal path of one de-identified slice of an item (:mod:`labeling.portal.api.slices`)."""
    return f"/api/items/{int(item_id)}/instances/{validate_instance_id(instance)}"


def task_fields(url: Callable[[str], str], item_id: int, geometry: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """The task's extra keys for a series item — ``level``, ``slices`` (the viewer's stack form) and
    ``image_url`` = the first slice —; {} for an image item. ``url``: the portal's path → URL."""
    if not is_series(geometry):
        return {}
    slices = [{"url": url(slice_url(item_id, instance)), "instance": instance, "frame": frame}
              for instance, frame in geometry["slices"]]  # type: ignore[index]
    return {"level": geometry["level"], "slices": slices, "image_url": slices[0]["url"]}  # type: ignore[index]


def is_slice_of(geometry: Optional[Mapping[str, Any]], instance: str) -> bool:
    return is_series(geometry) and any(i == instance for i, _ in geometry["slices"])  # type: ignore[index]


def item_sr(orthanc: Any, geometry: Mapping[str, Any], final: Mapping[str, Any], observers: Sequence[Any],
            options: Callable[[str], Mapping[str, Any]]) -> Any:
    """The TID 1500 SR of a series item's final label (:func:`labeling.dicom.sr.build_series_sr`): the
    headers of the first slice and of every slice an ROI is on; ``options(study UID)``: that
    function's keyword options (the SR's UIDs derive from the study)."""
    import io

    import pydicom

    from labeling.dicom.sr import build_series_sr

    wanted = dict.fromkeys([geometry["slices"][0][0]] + [roi["instance"] for roi in final.get("rois") or ()
                                                         if roi.get("instance")])
    sources = {instance: pydicom.dcmread(io.BytesIO(orthanc.instance_file(instance)), stop_before_pixels=True)
               for instance in wanted}
    study = str(next(iter(sources.values())).StudyInstanceUID)
    return build_series_sr(sources, final, observers, **options(study))


def check_slice(item_id: int, found: Optional[Sequence[Any]], instance: str) -> str:
    """The slice route's rule (module docstring): ``instance`` when it is one of the slices of item
    ``item_id``; ``found``: ``[geometry]`` of the item when the user may see it, else None (NotFound:
    not theirs, or no such item); Forbidden when not one of its slices, Invalid when not an ID."""
    from labeling.portal.jobs import Forbidden, NotFound

    try:
        validate_instance_id(instance)
    except (TypeError, ValueError):
        raise _invalid(f"instance {instance!r}: not an Orthanc instance ID") from None
    if found is None:
        raise NotFound(f"item {item_id}: not found")
    if not is_slice_of(found[0], instance):
        raise Forbidden(f"instance {instance}: not a slice of item {item_id}")
    return instance
