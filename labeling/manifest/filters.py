"""The manifest builder's filters: parsed and validated from the command line, sent to Orthanc's
``/tools/find`` as a query, or matched here against the manifest index.

Filters
-------
``--modality`` (repeatable, or a comma list; an Orthanc list match ``DX\\CR``), ``--study-uid``,
``--series-uid`` (repeatable), ``--patient-id`` (Orthanc wildcards ``*`` and ``?`` allowed),
``--study-date-from``/``--study-date-to`` (``YYYYMMDD`` or ``YYYY-MM-DD``, inclusive; sent as the
DICOM range ``A-B``, ``A-`` or ``-B``) and ``--metadata KEY=VALUE``. Orthanc 1.10 cannot query
metadata, so ``--metadata`` is matched by the walk (:mod:`labeling.manifest.query`) on the metadata
read with the instances (exact, case-sensitive value); a name no instance carries is reported as a
warning (a typo, or a user metadata not declared in ``UserMetadata``; an unnamed index such as
``1030`` works as is).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Optional

from labeling.manifest.exclusions import NON_IMAGE_MODALITIES

if TYPE_CHECKING:  # the walk's records, for a type only (query imports this module)
    from labeling.manifest.query import _Series, _Study


class FilterError(ValueError):
    """A bad filter value; ``flag`` names the command-line flag, the message starts with it."""

    def __init__(self, flag: str, problem: str) -> None:
        super().__init__(f"{flag}: {problem}")
        self.flag = flag
        self.problem = problem

    def __reduce__(self):  # picklable across processes: rebuilt from its own arguments
        return (type(self), (self.flag, self.problem))


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

