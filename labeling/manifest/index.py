"""The manifest index: every study, series and instance of an Orthanc, kept up to date from ``/changes``.

Why. On Orthanc 1.10.1 + PostgreSQL a ``/tools/find`` with ``Expand`` or a ``/tools/bulk-content``
read costs Orthanc several index queries per resource, more than a plain listing: measured with
``bench/manifest.py`` on 5,000 X-ray-shaped instances, ``GET /instances?expand`` answered in about a
quarter of the time ``/tools/bulk-content`` took for the same instances, and ``GET /series?expand``
in a third of a Series-level find. So when the query does not name a few studies, series or
patients, the manifest builder lists the whole server once per level (three listings, paged and
concurrent) and matches the filters here (:meth:`labeling.manifest.filters.ManifestFilters.matches`),
which is never more work for Orthanc than a client that reads every instance.

Incremental. The listing is saved with the sequence number of Orthanc's changes log (``GET
/changes``, Orthanc Book "Tracking changes") taken *before* it was read. The next build loads the
file and replays the changes since then: ``Stable*`` changes nothing, any other change re-reads
the resource it names (new instances, and their series and study when unknown). Orthanc 1.10 logs
**no** change for a deletion, so the index is then reconciled with the plain ID lists (``GET
/studies``, ``/series``, ``/instances``: one cheap index query each, ~20 ms for 5,000 IDs): what
Orthanc no longer lists is dropped, what it lists and the index lacks is read. A modified instance
cannot change in place in Orthanc 1.10: it is deleted and stored again (a ``NewInstance`` change,
re-read) or stored as a new instance, so nothing is served stale. When the log's last number went
backwards — a database reset, or the newest changes deleted with their resources (Orthanc drops a
resource's log entries with it) — the server is listed again.

The file. ``$MANIFEST_INDEX_FILE`` when set (``local up`` sets it in orthanc.env to
``<workdir>/manifest-index.json``, so ``local down --purge`` removes it with the stack), else
``$XDG_CACHE_HOME/dicom-annotate/manifest-index/<hash of the Orthanc URL>.json``
(``~/.cache`` without XDG_CACHE_HOME), one per Orthanc, created 0600 in a 0700 directory: it holds
PatientIDs and study dates, like Orthanc itself. ``python -m labeling manifest --index-cache FILE``
puts it elsewhere; ``--no-index-cache`` neither reads nor writes it (a full build). It holds the
main DICOM tags a manifest line needs, each instance's ordering tags (ImagePositionPatient,
ImageOrientationPatient, InstanceNumber, NumberOfFrames: Orthanc 1.10's instance MainDicomTags) and,
for instances of series whose Modality does not tell whether they are images, the ``SopClassUid``
metadata (set once at ingest); any other metadata (``--metadata``, ``--check-sop-class``) is read
fresh at each build. For ``--level series`` it also keeps what the per-task file read gave
(Rows, Columns, PixelSpacing and, for multi-frame instances, the per-frame positions:
:func:`labeling.manifest.series.slice_tags`), so a rebuild reads no file of an unchanged series.
Like ``SopClassUid``, those are dropped whenever the instance is (re-)read, i.e. whenever a change
names it: a modified instance is never ordered from its old geometry.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Optional

from labeling.manifest import INDEX_FILE_ENV

from labeling.manifest.exclusions import needs_sop_class_check
from labeling.manifest.filters import ManifestFilters
from labeling.manifest.query import (
    PARALLEL_REQUESTS,
    SOP_CLASS_METADATA,
    BuildResult,
    Candidate,
    Reporter,
    _Counted,
    _Instance,
    _parse_instance,
    _parse_series,
    _parse_study,
    _read_in_bulk,
    _Series,
    _Study,
    chunks,
    instances_to_check,
    judge_instances,
    split_by_modality,
)
from labeling.outdir import atomic_file

INDEX_VERSION: Final = 2  # 2: ordering tags per instance, file tags for series tasks
PAGE: Final = 5000          # resources per listing request (GET /{level}?expand&since&limit)
CHANGES_PAGE: Final = 4000  # changes per GET /changes
VERIFY_ATTEMPTS: Final = 4  # replay rounds while Orthanc keeps changing
LEVELS: Final = (("Study", "studies"), ("Series", "series"), ("Instance", "instances"))
ORDERING_TAGS: Final = ("SOPInstanceUID", "InstanceNumber", "NumberOfFrames", "ImagePositionPatient",
                        "ImageOrientationPatient")


def default_index_file(url: str) -> Path:
    """``$MANIFEST_INDEX_FILE`` when set, else ``$XDG_CACHE_HOME/dicom-annotate/manifest-index/<hash of
    url>.json`` (``~/.cache`` without XDG_CACHE_HOME)."""
    if os.environ.get(INDEX_FILE_ENV):
        return Path(os.environ[INDEX_FILE_ENV]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]
    return cache / "dicom-annotate" / "manifest-index" / f"{digest}.json"


@dataclass
class ServerIndex:
    """What a manifest needs of every resource of one Orthanc, as of change ``last_change``."""

    url: str
    last_change: int
    studies: dict[str, _Study] = field(default_factory=dict)
    study_patient: dict[str, str] = field(default_factory=dict)  # study ID -> its patient's ID
    series: dict[str, _Series] = field(default_factory=dict)     # instance_ids left empty
    instances: dict[str, _Instance] = field(default_factory=dict)
    sop_classes: dict[str, Optional[str]] = field(default_factory=dict)  # read where needed only
    file_tags: dict[str, dict[str, Any]] = field(default_factory=dict)  # --level series: per-task file reads
    how: str = "full"  # full | incremental: how this build got it (the report shows it)
    changed: bool = True  # differs from the saved file

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "last_change" and getattr(self, "last_change", value) != value:
            object.__setattr__(self, "changed", True)
        object.__setattr__(self, name, value)

    def add(self, level: str, raw: Mapping[str, Any]) -> None:
        self.changed = True
        if level == "Study":
            self.studies[raw["ID"]] = _parse_study(raw)
            self.study_patient[raw["ID"]] = raw.get("ParentPatient", "")
        elif level == "Series":
            self.series[raw["ID"]] = replace(_parse_series(raw), instance_ids=())
        else:
            instance = _parse_instance(raw)
            self.instances[raw["ID"]] = replace(instance, metadata={}, tags=ordering_tags(instance.tags))
            self.file_tags.pop(raw["ID"], None)  # read from the old file, if any: read again when needed

    def remove(self, level: str, resource_id: str) -> None:
        """Drop a deleted resource and everything under it."""
        self.changed = True
        if level == "Patient":
            for study_id in [s for s, p in self.study_patient.items() if p == resource_id]:
                self.remove("Study", study_id)
        elif level == "Study":
            self.studies.pop(resource_id, None)
            self.study_patient.pop(resource_id, None)
            for series_id in [s.id for s in self.series.values() if s.study_id == resource_id]:
                self.remove("Series", series_id)
        elif level == "Series":
            self.series.pop(resource_id, None)
            for instance_id in [i.id for i in self.instances.values() if i.series_id == resource_id]:
                self.remove("Instance", instance_id)
        else:
            self.instances.pop(resource_id, None)
            self.sop_classes.pop(resource_id, None)
            self.file_tags.pop(resource_id, None)

    # -- what series tasks read from the files (labeling.manifest.series.TagCache)
    def cached_file_tags(self, instance_id: str) -> Optional[dict[str, Any]]:
        return self.file_tags.get(instance_id) if instance_id in self.instances else None

    def keep_file_tags(self, instance_id: str, tags: Mapping[str, Any]) -> None:
        if instance_id in self.instances:
            self.file_tags[instance_id] = dict(tags)
            self.changed = True

    # -- the file
    def to_json(self) -> dict[str, Any]:
        return {
            "version": INDEX_VERSION, "url": self.url, "last_change": self.last_change,
            "studies": {k: [v.uid, v.date, v.patient_id, self.study_patient.get(k, "")]
                        for k, v in self.studies.items()},
            "series": {k: [v.study_id, v.uid, v.modality, v.number] for k, v in self.series.items()},
            "instances": {k: [v.series_id, v.sop_uid, v.number, v.frames,
                              v.tags.get("ImagePositionPatient"), v.tags.get("ImageOrientationPatient")]
                          for k, v in self.instances.items()},
            "sop_classes": self.sop_classes,
            "file_tags": self.file_tags,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServerIndex:
        index = cls(url=data["url"], last_change=int(data["last_change"]), how="incremental")
        for key, (uid, date, patient_id, patient) in data["studies"].items():
            index.studies[key] = _Study(key, uid, date, patient_id)
            index.study_patient[key] = patient
        for key, (study_id, uid, modality, number) in data["series"].items():
            index.series[key] = _Series(key, study_id, uid, modality, number, ())
        for key, (series_id, sop_uid, number, frames, position, orientation) in data["instances"].items():
            tags = ordering_tags({"SOPInstanceUID": sop_uid, "InstanceNumber": number, "NumberOfFrames": frames,
                                  "ImagePositionPatient": position, "ImageOrientationPatient": orientation})
            index.instances[key] = _Instance(key, series_id, sop_uid, number, frames, {}, tags)
        index.sop_classes = dict(data.get("sop_classes") or {})
        index.file_tags = {key: value for key, value in (data.get("file_tags") or {}).items() if key in index.instances}
        index.changed = False
        return index


def load_index(path: Path, url: str) -> Optional[ServerIndex]:
    """The saved index of ``url``, or None (absent, unreadable, another version or server)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != INDEX_VERSION or data.get("url") != url.rstrip("/"):
            return None
        return ServerIndex.from_json(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged cache is only a slower build


def save_index(index: ServerIndex, path: Path) -> None:
    """Write atomically, 0600, in a directory created 0700 (the index holds PatientIDs)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = json.dumps(index.to_json(), separators=(",", ":"))  # one call: the C encoder, ~5x json.dump
    with atomic_file(path, "w", encoding="utf-8") as out:
        out.write(text)
    index.changed = False


def ordering_tags(main_tags: Mapping[str, Any]) -> dict[str, Any]:
    """The instance MainDicomTags that order a series (:class:`labeling.dicom.series.SliceInfo`),
    without the empty ones."""
    return {key: main_tags[key] for key in ORDERING_TAGS if main_tags.get(key) not in (None, "")}


# ------------------------------------------------------------------------ talking to Orthanc


def _get(orthanc: _Counted, kind: str, path: str, **params: Any) -> Any:
    orthanc._count(kind)
    return orthanc._client.request("GET", path, params=params).json()


def _last_change(orthanc: _Counted) -> int:
    return int(_get(orthanc, "changes", "/changes", last="").get("Last") or 0)


def _statistics(orthanc: _Counted) -> tuple[int, int, int]:
    stats = _get(orthanc, "statistics", "/statistics")
    return int(stats["CountStudies"]), int(stats["CountSeries"]), int(stats["CountInstances"])


def _list_everything(orthanc: _Counted, url: str, reporter: Reporter) -> ServerIndex:
    """Every study, series and instance, expanded: pages of :data:`PAGE`, concurrently."""
    last = _last_change(orthanc)  # before the listing: the replay covers whatever it overlaps
    counts = dict(zip(("Study", "Series", "Instance"), _statistics(orthanc)))
    jobs = [(level, plural, since) for level, plural in LEVELS
            for since in range(0, counts[level] + 1, PAGE)]
    reporter.phase(f"listing {counts['Study']} studies, {counts['Series']} series and "
                   f"{counts['Instance']} instances", total=len(jobs))
    index = ServerIndex(url=url, last_change=last)

    def page(job: tuple[str, str, int]) -> tuple[str, str, int, list]:
        level, plural, since = job
        answer = _get(orthanc, "list", f"/{plural}", expand="", since=since, limit=PAGE)
        reporter.advance()
        return level, plural, since, answer

    with ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS) as pool:
        done = list(pool.map(page, jobs))
    for level, plural, since, answer in done:
        for raw in answer:
            index.add(level, raw)
        # more than /statistics said (stored meanwhile): keep paging this level
        while len(answer) == PAGE and since + PAGE > counts[level]:
            since += PAGE
            answer = page((level, plural, since))[3]
            for raw in answer:
                index.add(level, raw)
    return index


def _changes_since(orthanc: _Counted, since: int) -> tuple[list[dict], int]:
    changes: list[dict] = []
    while True:
        answer = _get(orthanc, "changes", "/changes", since=since, limit=CHANGES_PAGE)
        changes.extend(answer.get("Changes") or [])
        last = int(answer.get("Last") or since)
        if answer.get("Done") or last <= since:
            return changes, max(last, since)
        since = last


def _replay(orthanc: _Counted, index: ServerIndex, changes: Iterable[Mapping[str, Any]],
            reporter: Reporter) -> None:
    """Apply changes in order: drop what was deleted, re-read what any other change names."""
    reread: dict[str, set[str]] = {"Study": set(), "Series": set(), "Instance": set()}
    for change in changes:
        kind, level, resource_id = change.get("ChangeType", ""), change.get("ResourceType", ""), change.get("ID", "")
        if kind == "Deleted":
            index.remove(level, resource_id)
            if level in reread:
                reread[level].discard(resource_id)
        elif not kind.startswith("Stable") and level in reread:
            reread[level].add(resource_id)
    _read_into(orthanc, index, reread, reporter)


def _reconcile(orthanc: _Counted, index: ServerIndex, reporter: Reporter) -> None:
    """Compare with the IDs Orthanc lists (``GET /{level}``, one cheap index query each): Orthanc
    1.10 logs no change for a deletion, so what it no longer lists is dropped here; what it lists
    and the index lacks (stored during a listing) is read."""
    reporter.phase("checking the manifest index against Orthanc's resource lists")
    with ThreadPoolExecutor(max_workers=len(LEVELS)) as pool:
        listed = dict(zip((level for level, _ in LEVELS),
                          pool.map(lambda lp: set(_get(orthanc, "ids", f"/{lp[1]}")), LEVELS)))
    known = {"Study": index.studies, "Series": index.series, "Instance": index.instances}
    for level, resources in known.items():
        for resource_id in set(resources) - listed[level]:
            index.changed = True
            resources.pop(resource_id, None)  # children are gone from their own level's list too
            index.study_patient.pop(resource_id, None)
            index.sop_classes.pop(resource_id, None)
            index.file_tags.pop(resource_id, None)
    _read_into(orthanc, index, {level: listed[level] - set(known[level]) for level in known}, reporter)


def _read_into(orthanc: _Counted, index: ServerIndex, reread: Mapping[str, set[str]], reporter: Reporter) -> None:
    """(Re-)read resources by ID into the index, then the parents of new ones it does not know.

    Every level goes in one round of concurrent bulk reads (a new series or study is named by its
    own change); a second round is needed only for parents no change named."""
    wanted = {level: set(ids) for level, ids in reread.items() if ids}
    while wanted:
        ids = sorted(set().union(*wanted.values()))
        read = _read_raw(orthanc, ids, reporter, f"reading {len(ids)} changed resources")
        for level, level_ids in wanted.items():
            for resource_id in level_ids:
                if resource_id in read:
                    index.add(level, read[resource_id])
                    index.sop_classes.pop(resource_id, None)
                else:
                    index.remove(level, resource_id)  # deleted since the change was logged
        wanted = {level: missing for level, missing in (
            ("Series", {i.series_id for i in index.instances.values() if i.series_id not in index.series}),
            ("Study", {s.study_id for s in index.series.values() if s.study_id not in index.studies}),
        ) if missing - set().union(*wanted.values())}


def _read_raw(orthanc: _Counted, ids: Sequence[str], reporter: Reporter, phase: str,
              metadata: bool = False) -> dict[str, dict]:
    """The expanded JSON of resources of any level, by ID (``/tools/bulk-content``)."""
    reporter.phase(phase)
    with ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS) as pool:
        answers = pool.map(lambda chunk: orthanc.bulk_content(chunk, metadata=metadata), chunks(ids))
        return {raw["ID"]: raw for answer in answers for raw in answer}


def _fill_sop_classes(orthanc: _Counted, index: ServerIndex, reporter: Reporter) -> None:
    """Read the SopClassUid metadata of the instances whose series Modality does not tell."""
    needed = sorted(i.id for i in index.instances.values() if i.id not in index.sop_classes
                    and (s := index.series.get(i.series_id)) is not None and needs_sop_class_check(s.modality))
    if not needed:
        return
    read = _read_raw(orthanc, needed, reporter, f"reading the SOP class of {len(needed)} instances", metadata=True)
    for instance_id in needed:
        raw = read.get(instance_id)
        if raw is not None:
            index.sop_classes[instance_id] = (raw.get("Metadata") or {}).get(SOP_CLASS_METADATA)
            index.changed = True


def refresh_index(orthanc: _Counted, url: str, cached: Optional[ServerIndex], reporter: Reporter,
                  warnings: list[str]) -> ServerIndex:
    """``cached`` brought up to date, or a full listing: changes replayed, then reconciled with
    Orthanc's ID lists, until the changes log stood still meanwhile."""
    index = cached
    # The log's last number goes backwards after a database reset, but also when the newest changes
    # went with their resources (Orthanc deletes a resource's log entries with it): list again.
    if index is None or _last_change(orthanc) < index.last_change:
        index = _list_everything(orthanc, url, reporter)
    for _ in range(VERIFY_ATTEMPTS):
        reporter.phase("replaying Orthanc's changes log")
        changes, last = _changes_since(orthanc, index.last_change)
        _replay(orthanc, index, changes, reporter)
        index.last_change = last
        _reconcile(orthanc, index, reporter)
        now = _last_change(orthanc)
        if now <= last:  # nothing logged meanwhile (less: the newest entries went with their resources)
            index.last_change = now
            break
    else:
        warnings.append("Orthanc kept changing while the manifest index was brought up to date; the "
                        "manifest is as of the last change read")
    _fill_sop_classes(orthanc, index, reporter)
    return index


# ------------------------------------------------------------------------------- candidates


def find_candidates_indexed(orthanc: _Counted, url: str, filters: ManifestFilters, result: BuildResult,
                            reporter: Reporter, *, check_all_sop_classes: bool = False,
                            index_file: Optional[Path] = None) -> tuple[list[Candidate], ServerIndex]:
    """Like :func:`labeling.manifest.query.find_candidates`, from the index (read from and saved to
    ``index_file`` when given)."""
    cached = load_index(index_file, url) if index_file else None
    index = refresh_index(orthanc, url, cached, reporter, result.warnings)
    if index_file and index.changed:
        save_index(index, index_file)
    members: dict[str, list[str]] = defaultdict(list)
    for instance in index.instances.values():
        members[instance.series_id].append(instance.id)
    series = [_Series(s.id, s.study_id, s.uid, s.modality, s.number, tuple(sorted(members[s.id])))
              for s in sorted(index.series.values(), key=lambda s: s.id)
              if filters.matches(index.studies.get(s.study_id), s)]
    kept_series = split_by_modality(series, result)
    checked = instances_to_check(kept_series, filters, check_all_sop_classes)
    studies = {s.study_id: index.studies[s.study_id] for s in kept_series}
    instances: dict[str, _Instance] = {}
    for one in kept_series:
        for instance_id in one.instance_ids:
            instance = index.instances[instance_id]
            if instance_id in index.sop_classes and index.sop_classes[instance_id]:
                instance = replace(instance, metadata={SOP_CLASS_METADATA: index.sop_classes[instance_id]})
            instances[instance_id] = instance
    if filters.metadata or check_all_sop_classes:
        # metadata can change at any time: read fresh, never from the index
        _, fresh = _read_in_bulk(orthanc, [], sorted(checked), [], reporter)
        for instance_id in checked:
            if instance_id in fresh:
                instances[instance_id] = fresh[instance_id]
            else:
                instances.pop(instance_id, None)  # deleted since: counted as vanished
    return judge_instances(result, filters, kept_series, studies, instances, checked), index
