"""The Orthanc walk: which image instances a query matches, read in a fixed number of requests.

Building a manifest from Orthanc
================================
``python -m labeling manifest --schema FILE [filters] --out FILE`` reads Orthanc in a fixed number
of requests, never one per instance, in one of two ways:

* **the manifest index** (:mod:`labeling.manifest.index`, the default): every study, series and
  instance of the server listed once, kept up to date from Orthanc's ``/changes`` and ID lists in a
  cache file, the filters matched in Python
  (:meth:`labeling.manifest.filters.ManifestFilters.matches`); measured 11x an N+1 client on
  X-ray-shaped data and a rebuild after 1 % new instances ~7x cheaper than a full one;
* **one find + bulk reads**, described next: for a query naming studies, series or patients
  (:attr:`labeling.manifest.filters.ManifestFilters.selective`) while no index is saved (always
  with ``--no-index-cache``, which lists any other query without saving the index):

1. **the query** — one ``POST /tools/find`` at Series level with ``"Expand": true`` (Orthanc
   Book, "REST API of Orthanc" → "Performing finds within Orthanc"). Modality is a series tag, and
   a find also matches the study and patient tags of each candidate's parents, so every filter
   applies here. The answer gives each matching series' ``MainDicomTags`` (Modality,
   SeriesInstanceUID, SeriesNumber), its ``ParentStudy`` and its ``Instances``: a complete and
   consistent list of what matched (an instance stored later is simply not in this manifest).
2. **the details, in bulk** — the studies and instances of those series, read by ID with
   ``POST /tools/bulk-content`` (added in the Orthanc 1.9 series, present in 1.10.1: the expanded
   JSON that ``GET /{level}/{id}`` gives, for a list of resources, with their metadata when
   ``"Metadata": true``), in chunks of 200–2,000 IDs, four requests in flight; metadata only where
   the exclusion check or ``--metadata`` needs it. IDs deleted meanwhile are left out by Orthanc
   and counted as vanished.

Why not three finds (instances, series, studies)? On Orthanc 1.10.1 an expanded answer carries only
the tags of its own level — an Instance answer has ``SOPInstanceUID``, ``InstanceNumber``,
``NumberOfFrames`` and ``ParentSeries`` but **no** ``SOPClassUID`` (a main DICOM tag only from
1.11's ``ExtraMainDicomTags``) and no Modality — and every find re-checks each candidate against
the index, so a Study-level find without a study filter reads every study of the server. Bulk reads
touch exactly the resources needed, once, bring each instance's metadata along (its SOP class and
whatever ``--metadata`` asks about) and run in parallel. Measured on Orthanc 1.10.1 + PostgreSQL 15
(``bench/manifest.py``), Orthanc spends about 0.3–0.6 ms per resource per find or bulk read (a
few index round trips each), against ~2–3 ms per instance for a builder that sends ``GET
/instances/{id}`` and ``GET /instances/{id}/simplified-tags`` for each one.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, Optional, Protocol

from labeling.dicom.series import int_or_none as _int_or_none
from labeling.manifest.exclusions import modality_exclusion, needs_sop_class_check, sop_class_exclusion
from labeling.manifest.filters import ManifestFilters
from labeling.manifest.format import ManifestLine


class OrthancLike(Protocol):
    """What the builder needs of :class:`labeling.orthanc.client.OrthancClient` (thread-safe)."""

    def find(self, level: str, query: Mapping[str, str], *, expand: bool = True,
             limit: Optional[int] = None, since: Optional[int] = None,
             case_sensitive: bool = True) -> list[dict]: ...

    def request(self, method: str, path: str, **kwargs: Any) -> Any: ...


BULK_CHUNK_MIN: Final = 200
BULK_CHUNK_MAX: Final = 2000
PARALLEL_REQUESTS: Final = 4
"""Bulk reads in flight at once: Orthanc answers each on its own HTTP thread and, with the
PostgreSQL index plugin's ``IndexConnectionsCount`` (4 on the local stack), its own index
connection, so a few concurrent requests overlap Orthanc's round trips to the database."""
EXAMPLES_PER_REASON: Final = 5
SOP_CLASS_METADATA: Final = "SopClassUid"  # stored by Orthanc for every instance at ingest


@dataclass(frozen=True)
class _Series:
    id: str
    study_id: str
    uid: Optional[str]
    modality: Optional[str]
    number: Optional[int]
    instance_ids: tuple[str, ...]


@dataclass(frozen=True)
class _Study:
    id: str
    uid: Optional[str]
    date: Optional[str]
    patient_id: Optional[str]


@dataclass(frozen=True)
class _Instance:
    id: str
    series_id: str
    sop_uid: Optional[str]
    number: Optional[int]
    frames: Optional[int]
    metadata: Mapping[str, str]
    tags: Mapping[str, Any] = field(default_factory=dict)  # MainDicomTags (geometry for --level series)


@dataclass(frozen=True)
class Candidate:
    """An image instance the query matched, with what its line and the sort order need."""

    instance_id: str
    modality: Optional[str]
    study_uid: Optional[str]
    series_uid: Optional[str]
    sop_uid: Optional[str]
    study_date: Optional[str]
    patient_id: Optional[str]
    series_number: Optional[int]
    instance_number: Optional[int]
    frames: Optional[int]
    series_id: str = ""
    tags: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def sort_key(self) -> tuple:
        """Study date (undated last), study UID, series number, instance number, Orthanc ID."""
        return (
            not self.study_date, self.study_date or "",
            self.study_uid or "",
            self.series_number is None, self.series_number or 0,
            self.instance_number is None, self.instance_number or 0,
            self.instance_id,
        )

    def to_line(self, schema_name: str, labels: Sequence[str], task_type: str, *,
                include_phi: bool = False) -> ManifestLine:
        return ManifestLine(
            source=self.instance_id,
            labels=tuple(labels),
            task_type=task_type,
            schema=schema_name,
            modality=self.modality or None,
            study_instance_uid=self.study_uid or None,
            series_instance_uid=self.series_uid or None,
            sop_instance_uid=self.sop_uid or None,
            frames=self.frames or 1,
            patient_id=(self.patient_id or None) if include_phi else None,
            study_date=(self.study_date or None) if include_phi else None,
        )


@dataclass
class BuildResult:
    """What :func:`build_manifest` found: the lines plus the accounting the report prints."""

    lines: list[ManifestLine]
    matched: int = 0                                    # instances of the series the query matched
    excluded: Counter = field(default_factory=Counter)  # reason -> count of non-image instances
    excluded_examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> a few IDs
    metadata_mismatch: int = 0                          # images dropped by --metadata
    limited_out: int = 0                                # images beyond --limit
    vanished: int = 0                                   # deleted between the find and the reads
    unknown_sop_class: int = 0                          # kept: no SopClassUid metadata to judge by
    requests: Counter = field(default_factory=Counter)  # kind -> requests sent
    warnings: list[str] = field(default_factory=list)
    series_flags: Counter = field(default_factory=Counter)  # --level series: flag code -> tasks
    seconds: float = 0.0
    index: Optional[str] = None  # how the manifest index was had: full | incremental; None: a find

    @property
    def images(self) -> int:
        """Image instances that passed every filter (before ``--limit``)."""
        return len(self.lines) + self.limited_out


class Reporter(Protocol):
    """Progress sink: ``phase`` names the step under way; ``advance`` counts finished requests."""

    def phase(self, text: str, total: Optional[int] = None) -> None: ...

    def advance(self, count: int = 1) -> None: ...


class _SilentReporter:
    def phase(self, text: str, total: Optional[int] = None) -> None:
        pass

    def advance(self, count: int = 1) -> None:
        pass


class _Counted:
    """Wraps the client to count requests by kind (the report shows them; tests check them)."""

    def __init__(self, client: OrthancLike, requests: Counter) -> None:
        self._client = client
        self._requests = requests
        self._lock = threading.Lock()

    def _count(self, kind: str) -> None:
        with self._lock:
            self._requests[kind] += 1

    def find(self, level: str, query: dict[str, str]) -> list[dict]:
        self._count("find")
        return self._client.find(level, query, expand=True)

    def bulk_content(self, ids: Sequence[str], *, metadata: bool) -> list[dict]:
        """``POST /tools/bulk-content``: the expanded JSON of each resource named (any level),
        like a ``GET /{level}/{id}`` each but in one request; unknown IDs are left out."""
        self._count("bulk")
        response = self._client.request("POST", "/tools/bulk-content", ok_statuses=(404,),
                                        json={"Resources": list(ids), "Metadata": metadata})
        if response.status_code == 404:
            raise RuntimeError("this Orthanc has no /tools/bulk-content (added in the Orthanc 1.9 "
                               "series; the project runs 1.10.1): upgrade Orthanc")
        return response.json()

    def instance_tags(self, instance_id: str) -> dict:
        """``GET /instances/{id}/simplified-tags`` (reads the file: once per series task only)."""
        self._count("tags")
        return self._client.request("GET", f"/instances/{instance_id}/simplified-tags").json()


def _parse_series(raw: Mapping[str, Any]) -> _Series:
    tags = raw.get("MainDicomTags") or {}
    return _Series(
        id=raw["ID"],
        study_id=raw.get("ParentStudy", ""),
        uid=tags.get("SeriesInstanceUID") or None,
        modality=(tags.get("Modality") or "").strip().upper() or None,
        number=_int_or_none(tags.get("SeriesNumber")),
        instance_ids=tuple(raw.get("Instances") or ()),
    )


def _parse_study(raw: Mapping[str, Any]) -> _Study:
    tags = raw.get("MainDicomTags") or {}
    patient = raw.get("PatientMainDicomTags") or {}
    return _Study(
        id=raw["ID"],
        uid=tags.get("StudyInstanceUID") or None,
        date=(tags.get("StudyDate") or "").strip() or None,
        patient_id=patient.get("PatientID") or None,
    )


def _parse_instance(raw: Mapping[str, Any]) -> _Instance:
    tags = raw.get("MainDicomTags") or {}
    return _Instance(
        id=raw["ID"],
        series_id=raw.get("ParentSeries", ""),
        sop_uid=tags.get("SOPInstanceUID") or None,
        number=_int_or_none(tags.get("InstanceNumber")),
        frames=_int_or_none(tags.get("NumberOfFrames")),
        metadata=dict(raw.get("Metadata") or {}),
        tags=tags,
    )


def chunks(ids: Sequence[str], parallel: int = PARALLEL_REQUESTS) -> list[list[str]]:
    """Split ``ids`` into bulk requests: at least ``parallel`` of them when there is enough work
    to share, none smaller than BULK_CHUNK_MIN nor larger than BULK_CHUNK_MAX IDs."""
    if not ids:
        return []
    size = min(BULK_CHUNK_MAX, max(BULK_CHUNK_MIN, -(-len(ids) // parallel)))
    return [list(ids[i:i + size]) for i in range(0, len(ids), size)]


def _exclude(result: BuildResult, reason: str, instance_ids: Iterable[str]) -> None:
    examples = result.excluded_examples.setdefault(reason, [])
    for instance_id in instance_ids:
        result.excluded[reason] += 1
        if len(examples) < EXAMPLES_PER_REASON:
            examples.append(instance_id)


def _read_in_bulk(orthanc: _Counted, study_ids: Sequence[str], with_metadata: Sequence[str],
                  without_metadata: Sequence[str], reporter: Reporter,
                  ) -> tuple[dict[str, _Study], dict[str, _Instance]]:
    """The studies and instances named, read with concurrent ``/tools/bulk-content`` requests.

    Instances in ``with_metadata`` come with their metadata (``SopClassUid`` for the exclusion
    check, whatever ``--metadata`` asks about): one more index query each, which on Orthanc 1.10 +
    PostgreSQL makes an instance read about 40 % dearer, hence asked for only where needed.
    """
    work = ([("study", chunk) for chunk in chunks(study_ids)]
            + [("instance+metadata", chunk) for chunk in chunks(with_metadata)]
            + [("instance", chunk) for chunk in chunks(without_metadata)])
    studies: dict[str, _Study] = {}
    instances: dict[str, _Instance] = {}
    reporter.phase(f"reading {len(study_ids)} studies and {len(with_metadata) + len(without_metadata)} "
                   f"instances (/tools/bulk-content)", total=len(work))

    def read(job: tuple[str, list[str]]) -> tuple[str, list[dict]]:
        kind, ids = job
        answer = orthanc.bulk_content(ids, metadata=kind == "instance+metadata")
        reporter.advance()
        return kind, answer

    with ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS) as pool:
        for kind, answer in pool.map(read, work):
            for raw in answer:
                if kind == "study":
                    studies[raw["ID"]] = _parse_study(raw)
                else:
                    instances[raw["ID"]] = _parse_instance(raw)
    return studies, instances


def find_candidates(orthanc: _Counted, filters: ManifestFilters, result: BuildResult,
                    reporter: Reporter, *, check_all_sop_classes: bool = False) -> list[Candidate]:
    """Every image instance matching ``filters``, with its series and study tags.

    1. One Series-level ``/tools/find`` with Expand: the query itself (Modality is a series tag;
       study and patient tags match on the parents), answering each series' tags, its study's ID
       and its instances' IDs — a complete, consistent list of what matched.
    2. Series whose Modality is never an image are counted out without reading their instances.
    3. The studies and instances of the other series are read by ID in bulk, concurrently.
    4. Instances whose SOP class is not an image are counted out; ``--metadata`` is matched.
       Metadata is read where needed only: for series whose Modality does not tell
       (:func:`needs_sop_class_check`), for every instance with ``--metadata`` or
       ``check_all_sop_classes``.
    """
    reporter.phase("querying Orthanc (/tools/find, Series level)")
    series = [_parse_series(raw) for raw in orthanc.find("Series", filters.series_query())]
    kept_series = split_by_modality(series, result)
    study_ids = sorted({s.study_id for s in kept_series})
    instance_ids = [iid for s in kept_series for iid in s.instance_ids]
    checked = instances_to_check(kept_series, filters, check_all_sop_classes)
    studies, instances = _read_in_bulk(
        orthanc, study_ids, [iid for iid in instance_ids if iid in checked],
        [iid for iid in instance_ids if iid not in checked], reporter)
    return judge_instances(result, filters, kept_series, studies, instances, checked)


def split_by_modality(series: Sequence[_Series], result: BuildResult) -> list[_Series]:
    """Count what the query matched, exclude the series whose Modality is never an image and
    return the others."""
    result.matched = sum(len(s.instance_ids) for s in series)
    kept_series: list[_Series] = []
    for one in series:
        reason = modality_exclusion(one.modality)
        if reason:
            _exclude(result, reason, one.instance_ids)
        else:
            kept_series.append(one)
    return kept_series


def instances_to_check(kept_series: Sequence[_Series], filters: ManifestFilters,
                       check_all_sop_classes: bool) -> set[str]:
    """The instances whose metadata must be read: SOP class where the Modality does not tell,
    all of them with ``--metadata`` or ``--check-sop-class``."""
    read_metadata = bool(filters.metadata) or check_all_sop_classes
    return {iid for s in kept_series if read_metadata or needs_sop_class_check(s.modality)
            for iid in s.instance_ids}


def judge_instances(result: BuildResult, filters: ManifestFilters, kept_series: Sequence[_Series],
                    studies: Mapping[str, _Study], instances: Mapping[str, _Instance],
                    checked: set[str]) -> list[Candidate]:
    """The candidates of ``kept_series``: SOP class exclusions (for ``checked`` instances, from
    their metadata), ``--metadata`` matched; what is missing from ``studies``/``instances`` was
    deleted meanwhile and is counted as vanished."""
    instance_ids = [iid for s in kept_series for iid in s.instance_ids]
    by_id = {s.id: s for s in kept_series}
    candidates: list[Candidate] = []
    for instance_id in instance_ids:
        instance = instances.get(instance_id)
        parent = by_id[instance.series_id] if instance and instance.series_id in by_id else None
        study = studies.get(parent.study_id) if parent else None
        if instance is None or study is None:
            result.vanished += 1  # deleted since the find: nothing left to label
            continue
        if instance_id in checked:
            sop_class = instance.metadata.get(SOP_CLASS_METADATA)
            reason = sop_class_exclusion(sop_class)
            if reason:
                _exclude(result, reason, [instance_id])
                continue
            if not sop_class:
                result.unknown_sop_class += 1
        if not _metadata_match(instance.metadata, filters.metadata):
            result.metadata_mismatch += 1
            continue
        candidates.append(Candidate(
            instance_id=instance_id,
            modality=parent.modality,
            study_uid=study.uid,
            series_uid=parent.uid,
            sop_uid=instance.sop_uid,
            study_date=study.date,
            patient_id=study.patient_id,
            series_number=parent.number,
            instance_number=instance.number,
            frames=instance.frames,
            series_id=parent.id,
            tags=instance.tags,
        ))
    _warn_about(result, filters, instances.values())
    return candidates


def _metadata_match(metadata: Mapping[str, str], wanted: Sequence[tuple[str, str]]) -> bool:
    return all(metadata.get(name) == value for name, value in wanted)


def _warn_about(result: BuildResult, filters: ManifestFilters, instances: Iterable[_Instance]) -> None:
    """Warnings a user should see: a --metadata name nobody has, unjudgeable SOP classes."""
    read = list(instances)
    for name, _ in filters.metadata:
        if read and not any(name in instance.metadata for instance in read):
            result.warnings.append(
                f"--metadata {name}: none of the {len(read)} instances read has this metadata (names are "
                "case-sensitive; custom ones must be declared in Orthanc's UserMetadata, or be an index)")
    if result.unknown_sop_class:
        result.warnings.append(
            f"{result.unknown_sop_class} instances have no SopClassUid metadata (stored by an old Orthanc?); "
            "kept, judged by their series Modality only")
    if result.vanished:
        result.warnings.append(f"{result.vanished} instances were deleted while the manifest was built")

