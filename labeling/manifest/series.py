"""``manifest --level series``: the grouping step after the instance walk of :mod:`labeling.manifest.build`.

The walk has already read every matching image instance with its ``MainDicomTags`` — on Orthanc
1.10 these include ImagePositionPatient, ImageOrientationPatient, InstanceNumber and
NumberOfFrames at instance level, enough to order a series (:mod:`labeling.dicom.series`); the
manifest index keeps them too (:mod:`labeling.manifest.index`), and a walk that did not keep them
(candidates without ``tags``) costs one more bulk read of those instances. What they do not include
is Rows, Columns and PixelSpacing (and an Enhanced IOD's per-frame positions), so one
``GET /instances/{id}/simplified-tags`` is sent per *task*: the first slice (by InstanceNumber) of
each series, and each multi-frame instance. The slices of one series are assumed to share the
first slice's Rows/Columns/PixelSpacing (reading every file would cost a file read per slice; the
viewer checks each slice it loads). With the manifest index, what those reads gave is kept in it
(:func:`slice_tags`, a :class:`TagCache`) until a change names the instance, so rebuilding the
manifest of unchanged series reads no file.

One line per task (README, "Series tasks"): ``source`` = the Orthanc series ID (``level`` =
``series``) or the Orthanc instance ID (``level`` = ``multiframe``), then ``instances`` (Orthanc
instance IDs, ordered), ``frames``, ``geometry`` and ``flags`` from :class:`labeling.dicom.series.SeriesTask`.
Tasks come in the walk's order (study date, study UID, series number), multi-frame tasks of a
series before its series task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Final, Optional, Protocol

from labeling.manifest.format import ManifestLine
from labeling.manifest.query import PARALLEL_REQUESTS, BuildResult, Candidate, Reporter, _Counted, chunks
from labeling.dicom.series import SliceInfo, series_tasks


SLICE_TAGS: Final = ("SOPInstanceUID", "ImagePositionPatient", "ImageOrientationPatient", "InstanceNumber",
                     "NumberOfFrames", "Rows", "Columns", "PixelSpacing")
# (item sequence, tag) that SliceInfo.from_tags reads inside an Enhanced IOD's functional groups
_PER_FRAME: Final = (("PlanePositionSequence", "ImagePositionPatient"),)
_SHARED: Final = (("PlaneOrientationSequence", "ImageOrientationPatient"), ("PixelMeasuresSequence", "PixelSpacing"))


class TagCache(Protocol):
    """Where file tags read for series tasks are kept between builds (the manifest index)."""

    def cached_file_tags(self, instance_id: str) -> Optional[dict[str, Any]]: ...

    def keep_file_tags(self, instance_id: str, tags: Mapping[str, Any]) -> None: ...


def slice_tags(tags: Mapping[str, Any]) -> dict[str, Any]:
    """Of an instance's ``simplified-tags``, only what :meth:`labeling.dicom.series.SliceInfo.from_tags`
    reads (the functional group sequences cut down to the positions, orientation and spacing), so
    keeping them costs a few hundred bytes, not the whole header."""
    out = {key: tags[key] for key in SLICE_TAGS if key in tags}

    def cut(item: Any, paths: Sequence[tuple[str, str]]) -> dict[str, Any]:
        kept: dict[str, Any] = {}
        for sequence, tag in paths:
            inner = item.get(sequence) if isinstance(item, Mapping) else None
            if isinstance(inner, list) and inner and isinstance(inner[0], Mapping) and tag in inner[0]:
                kept[sequence] = [{tag: inner[0][tag]}]
        return kept

    for key, paths in (("PerFrameFunctionalGroupsSequence", _PER_FRAME), ("SharedFunctionalGroupsSequence", _SHARED)):
        if isinstance(tags.get(key), list):
            out[key] = [cut(item, paths) for item in tags[key]]
    return out


def _info(candidate: Candidate, extra_tags: dict[str, Any] | None = None) -> SliceInfo:
    tags = {**candidate.tags, **(extra_tags or {})}
    tags.setdefault("SOPInstanceUID", candidate.sop_uid)
    return SliceInfo.from_tags(candidate.instance_id, tags)


def _complete(orthanc: _Counted, candidates: Sequence[Candidate], reporter: Reporter) -> list[Candidate]:
    """Candidates with their ``MainDicomTags`` and Orthanc series ID: a walk that did not keep them
    (e.g. one served from a saved index) gets them from one bulk read of those instances."""
    missing = [c.instance_id for c in candidates if not c.tags or not c.series_id]
    if not missing:
        return list(candidates)
    work = chunks(missing)
    reporter.phase(f"reading the positions of {len(missing)} instances (/tools/bulk-content)", total=len(work))

    def read(ids: list[str]) -> list[dict]:
        answer = orthanc.bulk_content(ids, metadata=False)
        reporter.advance()
        return answer

    with ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS) as pool:
        raw = {item["ID"]: item for answer in pool.map(read, work) for item in answer}
    out = []
    for c in candidates:
        item = raw.get(c.instance_id)
        if item is not None:
            c = replace(c, tags=item.get("MainDicomTags") or {}, series_id=c.series_id or item.get("ParentSeries", ""))
        out.append(c)  # deleted meanwhile: kept as the walk saw it (ordered by what is known)
    return out


def series_lines(orthanc: _Counted, candidates: Sequence[Candidate], result: BuildResult, *, schema_name: str,
                 labels: Sequence[str], task_type: str, include_phi: bool, reporter: Reporter,
                 cache: Optional[TagCache] = None) -> list[ManifestLine]:
    """Group the walk's sorted ``candidates`` into series and multi-frame task lines; counts each
    flag code into ``result.series_flags``. ``cache``: file tags kept from earlier builds (read
    only where it has none, and what is read is kept there)."""
    groups: dict[str, list[Candidate]] = {}
    for candidate in _complete(orthanc, candidates, reporter):
        groups.setdefault(candidate.series_id, []).append(candidate)
    # which instance's full tags each series needs: its multi-frame instances, its first slice
    wanted: list[str] = []
    for members in groups.values():
        wanted += [c.instance_id for c in members if (c.frames or 1) > 1]
        single = [c for c in members if (c.frames or 1) == 1]
        if single:
            wanted.append(min(single, key=Candidate.sort_key).instance_id)
    full: dict[str, dict] = {}
    for instance_id in wanted:
        kept = cache.cached_file_tags(instance_id) if cache is not None else None
        if kept is not None:
            full[instance_id] = kept
    to_read = [instance_id for instance_id in wanted if instance_id not in full]
    reporter.phase(f"reading the geometry of {len(to_read)} series / multi-frame tasks "
                   f"({len(full)} kept in the manifest index)" if full else
                   f"reading the geometry of {len(to_read)} series / multi-frame tasks", total=len(to_read))

    def read(instance_id: str) -> tuple[str, dict]:
        tags = slice_tags(orthanc.instance_tags(instance_id))
        reporter.advance()
        return instance_id, tags

    with ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS) as pool:
        for instance_id, tags in pool.map(read, to_read):
            full[instance_id] = tags
            if cache is not None:
                cache.keep_file_tags(instance_id, tags)

    lines: list[ManifestLine] = []
    for series_id, members in groups.items():
        infos = [_info(c, full.get(c.instance_id)) for c in members]
        first = members[0]
        by_id = {c.instance_id: c for c in members}
        for task in series_tasks(series_id, infos):
            result.series_flags.update(set(task.flag_codes))
            one = by_id[task.source] if task.level == "multiframe" else None
            extra = {key: value for key, value in task.to_dict().items() if key != "frames"}
            size = (task.geometry["rows"], task.geometry["columns"])
            known = None not in size  # every slice's Rows/Columns: answers are checked against them
            lines.append(ManifestLine(
                source=task.source, labels=tuple(labels), task_type=task_type, schema=schema_name,
                modality=first.modality or None, study_instance_uid=first.study_uid or None,
                series_instance_uid=first.series_uid or None,
                sop_instance_uid=(one.sop_uid or None) if one else None, frames=task.frames,
                rows=size[0] if known else None, columns=size[1] if known else None,
                patient_id=(first.patient_id or None) if include_phi else None,
                study_date=(first.study_date or None) if include_phi else None,
                extra=extra))
    return lines

