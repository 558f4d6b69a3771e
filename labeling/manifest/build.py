"""Labeling manifest files: reading, writing and building them (``python -m labeling manifest``).

The format
==========
A manifest is a SageMaker Ground Truth *input manifest* (AWS docs, "Input manifest files"): UTF-8
JSON Lines, one JSON object per line, one line per data object to label. GT requires a ``source``
key (the object, as text) or a ``source-ref`` key (an S3 URI) and hands every key of the line to the
pre-annotation Lambda as ``dataObject`` (docs/architecture.md, "Contracts"). This project always writes
``source`` holding the **Orthanc instance ID**, the AWS sample's convention ("put instance IDs in
source field of manifest.json"): the pre-annotation step fetches the image from Orthanc, not S3.

One line is the label contract's :class:`labeling.contracts.manifest_line.ManifestLine` (every key,
its type and where it comes from are documented there once; re-exported here). Any key it does not
know is kept, in order, so a GT *output* manifest (the input line plus ``<attr>`` and
``<attr>-metadata``) survives ``read_manifest`` → ``write_manifest`` unchanged: the Ground Truth job,
the portal and training all read and write manifest files through this module.

Series tasks (``--level series``, issue 14): one line per series or multi-frame instance instead,
``source`` = the Orthanc series (or instance) ID, plus ``level``, ``instances``, ``geometry`` and
``flags`` (kept as unknown keys, in order); built by :mod:`labeling.manifest.series` from the same
walk, ordered by :mod:`labeling.dicom.series`; the README's "Series tasks" shows a line.

PHI. A manifest is internal: it points into Orthanc and goes to the labeling backend (GT reads it
from the project's bucket; the portal from its own store); annotators never see it, because the
pre-annotation step hands them a de-identified copy of the image only. Still, what identifies or
dates a person directly (PatientID, StudyDate) is left out unless ``--include-phi`` is given: the
study/series/SOP UIDs are what write-back (DICOM SR) and a train/test split by study need.

Building a manifest from Orthanc
================================
``python -m labeling manifest --schema FILE [filters] --out FILE`` reads Orthanc in a fixed number
of requests, never one per instance, in one of two ways:

* **the manifest index** (:mod:`labeling.manifest.index`, the default): every study, series and
  instance of the server listed once, kept up to date from Orthanc's ``/changes`` and ID lists in a
  cache file, the filters matched here (:meth:`ManifestFilters.matches`); measured 11x an N+1
  client on X-ray-shaped data and a rebuild after 1 % new instances ~7x cheaper than a full one;
* **one find + bulk reads**, described next: for a query naming studies, series or patients
  (:attr:`ManifestFilters.selective`) while no index is saved (always with ``--no-index-cache``,
  which lists any other query without saving the index):

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

Filters
-------
``--modality`` (repeatable, or a comma list; an Orthanc list match ``DX\\CR``), ``--study-uid``,
``--series-uid`` (repeatable), ``--patient-id`` (Orthanc wildcards ``*`` and ``?`` allowed),
``--study-date-from``/``--study-date-to`` (``YYYYMMDD`` or ``YYYY-MM-DD``, inclusive; sent as the
DICOM range ``A-B``, ``A-`` or ``-B``) and ``--metadata KEY=VALUE``. Orthanc 1.10 cannot query
metadata, so ``--metadata`` is matched here on the metadata read with the instances (exact,
case-sensitive value); a name no instance carries is reported as a warning (a typo, or a user
metadata not declared in ``UserMetadata``; an unnamed index such as ``1030`` works as is).

Non-image objects are never written
-----------------------------------
Structured reports, key object selections, presentation states, RT plans/structures/doses,
segmentations, registrations, waveforms, encapsulated documents … are not images an annotator can
label. They are excluded, counted per reason, and the counts printed and written to ``--report``:

1. by the series **Modality** (:data:`NON_IMAGE_MODALITIES`), straight from the query's answer,
   without reading their instances: DICOM makes Modality a series attribute and those IODs require
   their own value (SR, KO, PR, RTSTRUCT, SEG, DOC, ECG…);
2. by the instance's **SOP Class UID**, from the ``SopClassUid`` metadata Orthanc stores at
   ingest (an index read with the bulk read, no file access: S3 storage is never touched), judged
   by :func:`sop_class_exclusion` (PS3.4 Annex B storage SOP class families), wherever the
   Modality does not tell: ``OT`` (a secondary capture, but also raw data or a PDF), an absent
   Modality (an SR without one), or a code in neither :data:`NON_IMAGE_MODALITIES` nor
   :data:`IMAGE_MODALITIES`. ``--check-sop-class`` reads it for every instance; it is not the
   default because metadata makes each instance read ~40 % dearer on Orthanc 1.10 + PostgreSQL,
   and an image Modality (DX, CT…) with a non-image SOP class breaks the DICOM IODs.

Order, limit, exit codes
------------------------
Lines are sorted by study date (undated last), StudyInstanceUID, SeriesNumber, InstanceNumber
(numerically; missing last) and Orthanc ID, so the same query gives the same file. ``--limit N``
keeps the first N lines of that order. Exit codes: 0 written; 1 Orthanc or file error; 2 bad
arguments (one line naming the flag) or no image instance matched (the message says what was
excluded).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Optional, Protocol

from labeling.cli import BadInput, add_progress_argument, positive_int
from labeling.contracts.manifest_line import (  # noqa: F401 - the line format, re-exported
    GEOMETRY_KEYS, KNOWN_KEYS, OPTIONAL_KEYS, PHI_KEYS, REQUIRED_KEYS, ManifestError, ManifestLine)
from labeling.outdir import atomic_file
from labeling.dicom.series import int_or_none as _int_or_none

# --------------------------------------------------------------------------------- the file

def write_manifest(lines: Iterable[ManifestLine], path: str | Path) -> int:
    """Write ``lines`` as a manifest at ``path`` (``-`` for stdout); returns the line count.

    A regular file appears whole or not at all: lines go to a temporary file in the same
    directory, which then replaces ``path`` (an interrupted run never leaves half a manifest for
    a job). Anything else that exists (``/dev/null``, a FIFO, ``/dev/stdout``) is written in
    place: renaming over a device node would replace the device itself.
    """
    if str(path) == "-":
        return _write_lines(lines, sys.stdout)
    target = Path(path)
    if target.exists() and not target.is_file():
        if target.is_dir():
            raise IsADirectoryError(21, "Is a directory", str(target))
        with open(target, "w", encoding="utf-8", newline="\n") as out:
            return _write_lines(lines, out)
    with atomic_file(target, "w", encoding="utf-8", newline="\n") as out:
        count = _write_lines(lines, out)
        os.fsync(out.fileno())
    return count


def _write_lines(lines: Iterable[ManifestLine], out: Any) -> int:
    count = 0
    for line in lines:
        out.write(line.to_json() + "\n")
        count += 1
    out.flush()
    return count


def iter_manifest(path: str | Path, *, allow_duplicates: bool = False) -> Iterator[ManifestLine]:
    """Yield the lines of the manifest at ``path``, validating each as it is read.

    Raises :class:`ManifestError` ``<path>:<line>: <problem>`` on the first bad line: invalid
    UTF-8 or JSON, not an object, a missing or wrong key, an empty line (GT reads every line as
    an object), or a ``source`` already seen (one image labelled twice would be counted twice in
    training; ``allow_duplicates`` lifts that for concatenated output manifests).
    """
    name = str(path)
    seen: dict[str, int] = {}
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise ManifestError(f"{name}: cannot read file: {exc.strerror or exc}") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{name}:{number}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ManifestError(f"{where}: not UTF-8 (byte {exc.start + 1}: {exc.reason})") from None
            if number == 1 and text.startswith("\ufeff"):
                text = text[1:]  # a BOM some editors add; harmless, but JSON forbids it
            if not text.strip():
                raise ManifestError(f"{where}: empty line; each line must be one JSON object")
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{where}: invalid JSON at column {exc.colno}: {exc.msg}") from None
            try:
                line = ManifestLine.from_dict(data)
            except ManifestError as exc:
                raise ManifestError(f"{where}: {exc}") from None
            if not allow_duplicates:
                if line.source in seen:
                    raise ManifestError(f"{where}: duplicate source {line.source!r} (first on line {seen[line.source]})")
                seen[line.source] = number
            yield line


def read_manifest(path: str | Path, *, allow_duplicates: bool = False) -> list[ManifestLine]:
    """All lines of the manifest at ``path`` (see :func:`iter_manifest` for the checks)."""
    return list(iter_manifest(path, allow_duplicates=allow_duplicates))


# ------------------------------------------------------------------------------------ filters


class FilterError(ValueError):
    """A bad filter value; ``flag`` names the command-line flag, the message starts with it."""

    def __init__(self, flag: str, problem: str) -> None:
        super().__init__(f"{flag}: {problem}")
        self.flag = flag


_MODALITY_RE: Final = re.compile(r"^[A-Z0-9_]{1,16}$")  # CS value representation (PS3.5 6.2)
_UID_RE: Final = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")  # PS3.5 9.1
_METADATA_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_]{1,64}$")
MAX_UID_LENGTH: Final = 64
MAX_PATIENT_ID_LENGTH: Final = 64  # LO


@dataclass(frozen=True)
class ManifestFilters:
    """What to put in a manifest; empty fields do not filter. Build it with :func:`parse_filters`."""

    modalities: tuple[str, ...] = ()
    study_uids: tuple[str, ...] = ()
    series_uids: tuple[str, ...] = ()
    patient_id: Optional[str] = None
    study_date_from: Optional[dt.date] = None
    study_date_to: Optional[dt.date] = None
    metadata: tuple[tuple[str, str], ...] = ()

    def study_query(self) -> dict[str, str]:
        """The ``Query`` of a Study-level ``/tools/find``: study and patient tags only."""
        query: dict[str, str] = {}
        if self.study_uids:
            query["StudyInstanceUID"] = "\\".join(self.study_uids)
        if self.patient_id is not None:
            query["PatientID"] = self.patient_id
        date_range = dicom_date_range(self.study_date_from, self.study_date_to)
        if date_range:
            query["StudyDate"] = date_range
        return query

    def series_query(self) -> dict[str, str]:
        """The ``Query`` of a Series- or Instance-level find: Orthanc also matches the study and
        patient tags of each candidate's parents (Orthanc Book, ``/tools/find``)."""
        query = self.study_query()
        if self.modalities:
            # A backslash makes an Orthanc list match, as in DICOM C-FIND (PS3.4 C.2.2.2.2).
            query["Modality"] = "\\".join(self.modalities)
        if self.series_uids:
            query["SeriesInstanceUID"] = "\\".join(self.series_uids)
        return query

    @property
    def selective(self) -> bool:
        """True when a filter names studies, series or patients: a find reads only those, where
        a full listing of the server would read everything."""
        return bool(self.study_uids or self.series_uids or self.patient_id is not None)

    def matches(self, study: Optional[_Study], series: _Series) -> bool:
        """The query, matched here as Orthanc's find matches it (case-sensitive; ``*``/``?`` in
        PatientID; an inclusive date range that an undated study never matches), for the
        manifest index (:mod:`labeling.manifest.index`), which holds every series of the server."""
        if self.modalities and series.modality not in self.modalities:
            return False
        if self.series_uids and series.uid not in self.series_uids:
            return False
        if study is None:
            return False
        if self.study_uids and study.uid not in self.study_uids:
            return False
        if self.patient_id is not None and not _wildcard(self.patient_id).fullmatch(study.patient_id or ""):
            return False
        if self.study_date_from or self.study_date_to:
            if not study.date:
                return False
            if self.study_date_from and study.date < self.study_date_from.strftime("%Y%m%d"):
                return False
            if self.study_date_to and study.date > self.study_date_to.strftime("%Y%m%d"):
                return False
        return True

    @property
    def only_series_uids_narrow(self) -> bool:
        """True when the series UIDs are the only filter that narrows the studies to read."""
        return bool(self.series_uids) and not self.study_query()

    def to_dict(self) -> dict[str, Any]:
        """The filters as given, for the ``--report`` file."""
        return {
            "modality": list(self.modalities),
            "study_uid": list(self.study_uids),
            "series_uid": list(self.series_uids),
            "patient_id": self.patient_id,
            "study_date_from": self.study_date_from.isoformat() if self.study_date_from else None,
            "study_date_to": self.study_date_to.isoformat() if self.study_date_to else None,
            "metadata": {key: value for key, value in self.metadata},
        }


def _wildcard(pattern: str) -> re.Pattern[str]:
    """An Orthanc/C-FIND wildcard (``*`` any run, ``?`` one character) as a regular expression."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern),
                      re.DOTALL)


def parse_modalities(values: Sequence[str], flag: str = "--modality") -> tuple[str, ...]:
    """``["dx", "CR,MG"]`` → ``("DX", "CR", "MG")``: repeatable flag or comma list, upper-cased,
    duplicates dropped. A non-image modality is refused: it could never produce a line."""
    out: list[str] = []
    for value in values:
        for item in value.split(","):
            code = item.strip().upper()
            if not code:
                raise FilterError(flag, f"empty modality in {value!r}")
            if not _MODALITY_RE.match(code):
                raise FilterError(flag, f"{item.strip()!r} is not a DICOM modality code "
                                        "(letters, digits, '_'; at most 16), e.g. DX, CR, CT")
            reason = NON_IMAGE_MODALITIES.get(code)
            if reason:
                raise FilterError(flag, f"{code} objects are {reason}, not images; a manifest never "
                                        "includes them")
            if code not in out:
                out.append(code)
    return tuple(out)


def parse_uids(values: Sequence[str], flag: str) -> tuple[str, ...]:
    """DICOM UIDs (PS3.5 9.1: digits and dots, no leading zero, at most 64 characters)."""
    out: list[str] = []
    for value in values:
        for item in value.split(","):
            uid = item.strip()
            if not uid:
                raise FilterError(flag, f"empty UID in {value!r}")
            if len(uid) > MAX_UID_LENGTH or not _UID_RE.match(uid):
                raise FilterError(flag, f"{uid!r} is not a DICOM UID (digits and dots, at most "
                                        f"{MAX_UID_LENGTH} characters, e.g. 1.2.840.113619.2.55.3)")
            if uid not in out:
                out.append(uid)
    return tuple(out)


def parse_patient_id(value: str, flag: str = "--patient-id") -> str:
    """A PatientID to match; Orthanc wildcards ``*`` and ``?`` are allowed (e.g. ``SYN7-*``)."""
    if not value.strip():
        raise FilterError(flag, "must not be empty")
    if "\\" in value:
        # A backslash would turn into an Orthanc list match; LO values cannot hold one anyway.
        raise FilterError(flag, f"{value!r} contains a backslash, which a PatientID cannot hold")
    if any(ord(char) < 32 for char in value):
        raise FilterError(flag, f"{value!r} contains a control character")
    if len(value) > MAX_PATIENT_ID_LENGTH:
        raise FilterError(flag, f"is {len(value)} characters long; a PatientID has at most {MAX_PATIENT_ID_LENGTH}")
    return value


def parse_dicom_date(value: str, flag: str) -> dt.date:
    """``YYYYMMDD`` (DICOM DA) or ``YYYY-MM-DD`` (ISO 8601) → a date; FilterError otherwise."""
    text = value.strip()
    for pattern in ("%Y%m%d", "%Y-%m-%d"):
        if re.fullmatch(r"\d{8}" if pattern == "%Y%m%d" else r"\d{4}-\d{2}-\d{2}", text):
            try:
                return dt.datetime.strptime(text, pattern).date()
            except ValueError:
                raise FilterError(flag, f"{value!r} is not a calendar date") from None
    raise FilterError(flag, f"{value!r} is not a date; use YYYYMMDD or YYYY-MM-DD")


def dicom_date_range(start: Optional[dt.date], end: Optional[dt.date]) -> Optional[str]:
    """The DICOM range match ``A-B``, ``A-`` or ``-B`` (PS3.4 C.2.2.2.5) Orthanc understands."""
    if start is None and end is None:
        return None
    left = start.strftime("%Y%m%d") if start else ""
    right = end.strftime("%Y%m%d") if end else ""
    return f"{left}-{right}"


def parse_metadata_filters(values: Sequence[str], flag: str = "--metadata") -> tuple[tuple[str, str], ...]:
    """``["Origin=RestApi"]`` → ``(("Origin", "RestApi"),)``; the same key twice is refused
    (two values would match nothing)."""
    out: dict[str, str] = {}
    for value in values:
        key, sep, wanted = value.partition("=")
        key = key.strip()
        if not sep:
            raise FilterError(flag, f"{value!r} is not KEY=VALUE")
        if not _METADATA_NAME_RE.match(key):
            raise FilterError(flag, f"{key!r} is not an Orthanc metadata name (letters, digits, '_'; "
                                    "e.g. Origin, or a UserMetadata name or index)")
        if key in out and out[key] != wanted:
            raise FilterError(flag, f"{key} is given twice ({out[key]!r} and {wanted!r})")
        out[key] = wanted
    return tuple(out.items())


def parse_filters(
    *,
    modalities: Sequence[str] = (),
    study_uids: Sequence[str] = (),
    series_uids: Sequence[str] = (),
    patient_id: Optional[str] = None,
    study_date_from: Optional[str] = None,
    study_date_to: Optional[str] = None,
    metadata: Sequence[str] = (),
) -> ManifestFilters:
    """Validate raw filter values (as typed on the command line) into :class:`ManifestFilters`."""
    start = parse_dicom_date(study_date_from, "--study-date-from") if study_date_from is not None else None
    end = parse_dicom_date(study_date_to, "--study-date-to") if study_date_to is not None else None
    if start and end and start > end:
        raise FilterError("--study-date-from", f"{start.isoformat()} is after --study-date-to {end.isoformat()}")
    return ManifestFilters(
        modalities=parse_modalities(modalities),
        study_uids=parse_uids(study_uids, "--study-uid"),
        series_uids=parse_uids(series_uids, "--series-uid"),
        patient_id=parse_patient_id(patient_id) if patient_id is not None else None,
        study_date_from=start,
        study_date_to=end,
        metadata=parse_metadata_filters(metadata),
    )


# -------------------------------------------------------------------------- exclusion tables

NON_IMAGE_MODALITIES: Final[Mapping[str, str]] = {
    # PS3.3 C.7.3.1.1.1 defined terms whose IODs hold no image to label.
    "SR": "structured reports",
    "KO": "key object selections",
    "PR": "presentation states",
    "RTSTRUCT": "RT structure sets",
    "RTPLAN": "RT plans",
    "RTDOSE": "RT dose grids",
    "RTRECORD": "RT treatment records",
    "RTINTENT": "RT physician intents",
    "RTRAD": "RT radiation sets",
    "RTSEGANN": "RT segment annotations",
    "SEG": "segmentations (derived labels)",
    "REG": "spatial registrations",
    "FID": "spatial fiducials",
    "RWV": "real world value maps",
    "SMR": "stereometric relationships",
    "DOC": "encapsulated documents",
    "PLAN": "plans",
    "ASMT": "content assessments",
    "ANN": "annotations",
    "M3D": "3D models",
    "OSS": "optical surface scans",
    "CTPROTOCOL": "CT protocols",
    "XAPROTOCOL": "XA protocols",
    "AU": "audio recordings",
    "ECG": "ECG waveforms",
    "EEG": "EEG waveforms",
    "EMG": "EMG waveforms",
    "EOG": "EOG waveforms",
    "EPS": "electrophysiology waveforms",
    "HD": "hemodynamic waveforms",
    "RESP": "respiratory waveforms",
    "POS": "position sensor waveforms",
    "LEN": "lensometry measurements",
    "KER": "keratometry measurements",
    "OAM": "ophthalmic axial measurements",
    "SRF": "subjective refraction measurements",
    "AR": "autorefraction measurements",
    "VA": "visual acuity measurements",
    "IOL": "intraocular lens calculations",
    "OPV": "visual field measurements",
}
"""Series Modality values that are never images to label, with the reason shown to the user."""

IMAGE_MODALITIES: Final = frozenset({
    "CR", "CT", "DX", "MG", "MR", "NM", "PT", "US", "XA", "RF", "IO", "PX", "OP", "OPT", "OPM",
    "ES", "SM", "XC", "GM", "IVUS", "IVOCT", "OCT", "BMD", "DMS", "RG", "TG", "LS", "RTIMAGE",
    "BI", "DG", "CFM", "TEXTUREMAP",
})
"""Series Modality values of image IODs (PS3.3 C.7.3.1.1.1): their instances' SOP class is not
read unless asked (``--check-sop-class``). ``OT``, an absent Modality or an unknown code do not
tell, so those instances are always checked."""

_STORAGE_ROOT: Final = "1.2.840.10008.5.1.4.1.1"
_NON_IMAGE_SOP_CLASS_FAMILIES: Final[tuple[tuple[str, Optional[str]], ...]] = (
    # (UID, or UID prefix ending a component, and the reason; None: an image after all.)
    # First match wins, so exceptions come before their family. PS3.4 Annex B, Table B.5-1.
    (f"{_STORAGE_ROOT}.481.1", None),                 # RT Image Storage is an image,
    (f"{_STORAGE_ROOT}.481.23", None),                # so are Enhanced RT Image
    (f"{_STORAGE_ROOT}.481.24", None),                # and Enhanced Continuous RT Image
    (f"{_STORAGE_ROOT}.481", "radiotherapy object"),  # RT dose, structure set, plan, records…
    (f"{_STORAGE_ROOT}.88.59", "key object selection"),
    (f"{_STORAGE_ROOT}.88", "structured report"),     # every SR flavour, CAD and dose SRs
    (f"{_STORAGE_ROOT}.11", "presentation state"),
    (f"{_STORAGE_ROOT}.9", "waveform"),               # ECG, audio, hemodynamic, EEG…
    (f"{_STORAGE_ROOT}.104", "encapsulated document"),  # PDF, CDA, STL, OBJ, MTL
    (f"{_STORAGE_ROOT}.66.4", "segmentation"),
    (f"{_STORAGE_ROOT}.66.5", "surface segmentation"),
    (f"{_STORAGE_ROOT}.66", "raw data, registration or fiducials"),
    (f"{_STORAGE_ROOT}.67", "real world value mapping"),
    (f"{_STORAGE_ROOT}.68", "surface scan"),
    (f"{_STORAGE_ROOT}.77.1.5.3", "stereometric relationship"),
    (f"{_STORAGE_ROOT}.78", "ophthalmic measurements"),
    (f"{_STORAGE_ROOT}.79.1", "ophthalmic report"),
    (f"{_STORAGE_ROOT}.80.1", "visual field measurements"),
    (f"{_STORAGE_ROOT}.90.1", "content assessment"),
    (f"{_STORAGE_ROOT}.91.1", "bulk annotations"),
    (f"{_STORAGE_ROOT}.4.2", "MR spectroscopy"),
    (f"{_STORAGE_ROOT}.8", "standalone overlay"),
    (f"{_STORAGE_ROOT}.10", "standalone modality LUT"),
    (f"{_STORAGE_ROOT}.129", "standalone PET curve"),
    (f"{_STORAGE_ROOT}.131", "structured display"),
    (f"{_STORAGE_ROOT}.200", "procedure protocol"),
)


def modality_exclusion(modality: Optional[str]) -> Optional[str]:
    """Why a series of this Modality is left out (``"modality SR: structured reports"``), or None."""
    reason = NON_IMAGE_MODALITIES.get((modality or "").strip().upper())
    return f"modality {modality.strip().upper()}: {reason}" if reason and modality else None


def needs_sop_class_check(modality: Optional[str]) -> bool:
    """True when the series Modality does not tell whether its instances are images."""
    code = (modality or "").strip().upper()
    return code not in IMAGE_MODALITIES and code not in NON_IMAGE_MODALITIES


def sop_class_exclusion(sop_class_uid: Optional[str]) -> Optional[str]:
    """Why an instance of this SOP Class UID is left out, or None for an image (or unknown) class.

    Unknown or private classes are kept: a class is excluded only when it belongs to a family of
    PS3.4 non-image storage classes, so a new image class never silently disappears.
    """
    uid = (sop_class_uid or "").strip()
    if not uid:
        return None
    for prefix, reason in _NON_IMAGE_SOP_CLASS_FAMILIES:
        if uid == prefix or uid.startswith(prefix + "."):
            if reason is None:
                return None
            return f"SOP class {_sop_class_name(uid)}: {reason}"
    return None


def _sop_class_name(uid: str) -> str:
    try:
        from pydicom.uid import UID  # names only; pydicom is a project dependency (synth)
    except ImportError:  # pragma: no cover - pydicom is installed with the project
        return uid
    name = UID(uid).name
    return f"{name} ({uid})" if name and name != uid else uid


# ---------------------------------------------------------------------- reading from Orthanc


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
LEVELS: Final = ("instance", "series")
"""``--level``: one task per image instance, or one per series / multi-frame instance (README)."""
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


def build_manifest(
    client: OrthancLike,
    *,
    schema_name: str,
    labels: Sequence[str],
    task_type: str,
    filters: ManifestFilters = ManifestFilters(),
    limit: Optional[int] = None,
    include_phi: bool = False,
    check_all_sop_classes: bool = False,
    reporter: Optional[Reporter] = None,
    level: str = "instance",
    use_index: bool = False,
    index_file: Optional[Path] = None,
) -> BuildResult:
    """Query Orthanc and return the manifest lines (non-images excluded, sorted, limited).

    ``client`` is an :class:`labeling.orthanc.client.OrthancClient` (or anything with its ``find``
    and ``request``, see :class:`OrthancLike`). Nothing is written: see :func:`write_manifest`.
    ``use_index``: list the whole server and match here, or replay the changes since the index
    saved in ``index_file`` (:mod:`labeling.manifest.index`); otherwise one find + bulk reads.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    started = time.perf_counter()
    reporter = reporter or _SilentReporter()
    result = BuildResult(lines=[])
    orthanc = _Counted(client, result.requests)

    if use_index:
        from labeling.manifest.index import find_candidates_indexed

        images, index = find_candidates_indexed(
            orthanc, str(getattr(client, "url", "")), filters, result, reporter,
            check_all_sop_classes=check_all_sop_classes, index_file=index_file)
        result.index = index.how
    else:
        images = find_candidates(orthanc, filters, result, reporter, check_all_sop_classes=check_all_sop_classes)
    images.sort(key=Candidate.sort_key)
    if level == "series":
        from labeling.manifest.series import series_lines

        result.lines = series_lines(orthanc, images, result, schema_name=schema_name, labels=labels,
                                    task_type=task_type, include_phi=include_phi, reporter=reporter)
        if limit is not None and len(result.lines) > limit:
            result.limited_out = len(result.lines) - limit
            result.lines = result.lines[:limit]
        result.seconds = time.perf_counter() - started
        return result
    if limit is not None and len(images) > limit:
        result.limited_out = len(images) - limit
        images = images[:limit]
    result.lines = [c.to_line(schema_name, labels, task_type, include_phi=include_phi) for c in images]
    result.seconds = time.perf_counter() - started
    return result


# ------------------------------------------------------------------------------------- CLI


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``manifest`` to ``python -m labeling`` (see labeling/cli.py)."""
    from labeling.orthanc.connection import add_connection_arguments

    parser = subparsers.add_parser(
        "manifest",
        description=(
            "Query Orthanc and write one JSON line per image instance: "
            '{"source": <Orthanc instance ID>, "labels": [...], "task_type": ..., "schema": ..., '
            "plus modality, study/series/SOP instance UIDs and frames} (--level series: one line per "
            "series, slices ordered, or per multi-frame instance). Non-image objects (SR, KO, "
            "PR, RT, SEG, waveforms, documents…) are excluded and counted. Lines are sorted by study "
            "date, study UID, series number, instance number. Exit 0: written; 1: Orthanc or file "
            "error; 2: bad arguments or no image matched; 3: Orthanc unreachable."
        ),
    )
    parser.add_argument("--schema", required=True, type=Path, metavar="FILE",
                        help="label schema file (YAML/JSON, see labeling/contracts/schema.py), e.g. schemas/chest-xray.yaml")
    parser.add_argument("--out", required=True, metavar="FILE", help="manifest to write ('-' for stdout)")
    filters = parser.add_argument_group("filters (all must match; none: every image in Orthanc)")
    filters.add_argument("--modality", action="append", default=[], metavar="CODE",
                         help="series Modality, repeatable or comma-separated (e.g. DX,CR)")
    filters.add_argument("--study-uid", action="append", default=[], metavar="UID",
                         help="StudyInstanceUID (repeatable)")
    filters.add_argument("--series-uid", action="append", default=[], metavar="UID",
                         help="SeriesInstanceUID (repeatable)")
    filters.add_argument("--patient-id", metavar="ID",
                         help="PatientID; Orthanc wildcards * and ? allowed (e.g. 'SYN7-*')")
    filters.add_argument("--study-date-from", metavar="DATE", help="first StudyDate, YYYYMMDD or YYYY-MM-DD")
    filters.add_argument("--study-date-to", metavar="DATE", help="last StudyDate (inclusive)")
    filters.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE",
                         help="Orthanc instance metadata equal to VALUE (repeatable; matched on the "
                              "metadata read with the instances: Orthanc 1.10 cannot search metadata)")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="write at most N lines (the first N in order)")
    parser.add_argument("--level", choices=LEVELS, default="instance",
                        help="instance (default): one line per image; series: one line per series, slices "
                             "ordered along the normal, plus one per multi-frame instance (README, 'Series tasks')")
    parser.add_argument("--include-phi", action="store_true",
                        help="also write patient_id and study_date (left out by default: PHI)")
    parser.add_argument("--check-sop-class", action="store_true",
                        help="read every instance's SOP class, also in series whose Modality says "
                             "image (DX, CT, MR...); costs Orthanc ~40%% more per instance read")
    parser.add_argument("--index-cache", type=Path, metavar="FILE",
                        help="the manifest index of this Orthanc (default: ~/.cache/dicom-annotate/"
                             "manifest-index/<hash of the URL>.json): the next build replays only "
                             "Orthanc's changes since")
    parser.add_argument("--no-index-cache", action="store_true",
                        help="neither read nor write the manifest index: a full build")
    parser.add_argument("--report", type=Path, metavar="FILE", help="write a JSON report (counts, exclusions, timings)")
    add_progress_argument(parser, old_flag="--quiet")
    add_connection_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``python -m labeling manifest``: query, write, summarise; returns the exit code."""
    from labeling.orthanc.connection import ConnectionError_, connection_from_args
    from labeling.contracts.schema import SchemaError, load_schema

    try:
        filters = parse_filters(
            modalities=args.modality, study_uids=args.study_uid, series_uids=args.series_uid,
            patient_id=args.patient_id, study_date_from=args.study_date_from,
            study_date_to=args.study_date_to, metadata=args.metadata,
        )
    except FilterError as exc:
        raise BadInput(str(exc)) from None
    try:
        schema = load_schema(args.schema)
    except SchemaError as exc:
        raise BadInput(f"--schema: {exc}") from None
    try:
        connection = connection_from_args(args)
    except ConnectionError_ as exc:
        raise BadInput(str(exc)) from None

    from labeling.orthanc.client import OrthancClient, OrthancError

    console = _stderr_console()
    client = OrthancClient.from_connection(connection)
    use_index, index_file = choose_index(filters, connection.url, args.index_cache, args.no_index_cache)
    try:
        client.system(retries=0)  # unreachable: fail now, with the CLI's hint and exit 3
        with _RichReporter(console, enabled=args.progress) as reporter:
            result = build_manifest(
                client, schema_name=schema.name, labels=schema.label_names, task_type=schema.task_type,
                filters=filters, limit=args.limit, include_phi=args.include_phi,
                check_all_sop_classes=args.check_sop_class, reporter=reporter,
                use_index=use_index, index_file=index_file, level=getattr(args, "level", "instance"),
            )
    except OrthancError as exc:
        if exc.status is None or exc.status in (401, 403):
            raise  # the CLI's one line for an unreachable or refusing service (exit 3)
        _say(console, f"manifest: cannot query Orthanc at {connection.url}: {exc}", "red")
        return 1
    except Exception as exc:  # noqa: BLE001 - one clear line for any Orthanc failure, not a traceback
        _say(console, f"manifest: cannot query Orthanc at {connection.url}: {exc}", "red")
        return 1
    finally:
        close = getattr(client, "close", None)
        if callable(close):
            close()

    for warning in result.warnings:
        _say(console, f"warning: {warning}", "yellow")
    report = _report(args, schema.name, filters, connection.url, result)
    if not result.lines:
        described = _describe_filters(filters)
        _say(console, "manifest: no image instance matches the filters"
             + (f" ({described})" if described else "")
             + f"; {result.matched} instances matched the query, "
             + _exclusion_sentence(result) + "; nothing written", "red")
        _write_report(args, report, console)
        return 2
    try:
        written = write_manifest(result.lines, args.out)
    except OSError as exc:
        _say(console, f"manifest: cannot write {args.out}: {exc.strerror or exc}", "red")
        return 1
    report["written"] = written
    _print_summary(console, result, written, args.out)
    if _write_report(args, report, console):
        return 1
    return 0


def choose_index(filters: ManifestFilters, url: str, index_cache: Optional[Path],
                 no_index_cache: bool) -> tuple[bool, Optional[Path]]:
    """(use the index, its file): the index when one is saved, or when the query would read most of
    the server anyway; a find when it names a few studies, series or patients and none is saved."""
    from labeling.manifest.index import default_index_file

    if no_index_cache:
        return not filters.selective, None
    index_file = index_cache or default_index_file(url)
    return (not filters.selective or index_file.exists()), index_file


def _describe_filters(filters: ManifestFilters) -> str:
    """The filters as flags, e.g. ``--modality DX,CR, --metadata Origin=RestApi``."""
    parts = []
    for key, value in filters.to_dict().items():
        if isinstance(value, list):
            value = ",".join(value)
        elif isinstance(value, dict):
            value = " ".join(f"{k}={v}" for k, v in value.items())
        if value:
            parts.append(f"--{key.replace('_', '-')} {value}")
    return ", ".join(parts)


def _exclusion_sentence(result: BuildResult) -> str:
    total = sum(result.excluded.values())
    if not total:
        return "none of them excluded as non-image"
    reasons = "; ".join(f"{reason}: {count}" for reason, count in result.excluded.most_common())
    return f"{total} excluded as non-image ({reasons})"


def _print_summary(console: Any, result: BuildResult, written: int, out: str) -> None:
    requests = ", ".join(f"{n} {kind}" for kind, n in sorted(result.requests.items()))
    _say(console, f"matched {result.matched} instances; {_exclusion_sentence(result)}")
    if result.metadata_mismatch:
        _say(console, f"--metadata: {result.metadata_mismatch} images did not match")
    if result.limited_out:
        _say(console, f"--limit: {result.limited_out} more matching images left out")
    if result.series_flags:
        flags = ", ".join(f"{code}: {n}" for code, n in result.series_flags.most_common())
        _say(console, f"--level series: flagged tasks ({flags}); see each line's flags", "yellow")
    where = "stdout" if out == "-" else out
    _say(console, f"wrote {written} lines to {where} in {result.seconds:.2f} s ({requests} requests)", "green")


def _report(args: argparse.Namespace, schema_name: str, filters: ManifestFilters, url: str,
            result: BuildResult) -> dict[str, Any]:
    return {
        "out": args.out,
        "schema": schema_name,
        "orthanc_url": url,
        "filters": filters.to_dict(),
        "limit": args.limit,
        "include_phi": args.include_phi,
        "matched": result.matched,
        "excluded": {
            "total": sum(result.excluded.values()),
            "by_reason": dict(result.excluded.most_common()),
            "examples": result.excluded_examples,
        },
        "metadata_mismatch": result.metadata_mismatch,
        "unknown_sop_class": result.unknown_sop_class,
        "vanished": result.vanished,
        "images": result.images,
        "limited_out": result.limited_out,
        "written": 0,
        "requests": dict(result.requests),
        "index": result.index,
        "level": getattr(args, "level", "instance"),
        "series_flags": dict(result.series_flags.most_common()),
        "warnings": result.warnings,
        "seconds": round(result.seconds, 3),
    }


def _write_report(args: argparse.Namespace, report: Mapping[str, Any], console: Any) -> bool:
    """Write ``--report``; True on failure (already printed)."""
    if not args.report:
        return False
    try:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        _say(console, f"manifest: cannot write --report {args.report}: {exc.strerror or exc}", "red")
        return True
    return False


def _say(console: Any, text: str, style: Optional[str] = None) -> None:
    """Print ``text`` as is: file names, IDs and Orthanc messages may hold ``[...]``, which rich
    would otherwise read as markup."""
    console.print(text, style=style, markup=False, highlight=False)


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


class _RichReporter:
    """Progress on stderr: a spinner per phase, a bar for per-instance work (rich)."""

    def __init__(self, console: Any, *, enabled: bool) -> None:
        self._console = console
        self._enabled = enabled and console.is_terminal
        self._progress: Any = None
        self._task: Any = None
        self._lock = threading.Lock()

    def __enter__(self) -> _RichReporter:
        if self._enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TimeElapsedColumn(), console=self._console,
                                      transient=True)
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def phase(self, text: str, total: Optional[int] = None) -> None:
        if self._progress is None:
            return
        with self._lock:
            if self._task is not None:
                self._progress.update(self._task, visible=False)
            self._task = self._progress.add_task(text, total=total)

    def advance(self, count: int = 1) -> None:
        if self._progress is None or self._task is None:
            return
        with self._lock:
            self._progress.advance(self._task, count)


