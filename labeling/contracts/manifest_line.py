"""One manifest line: the label contract's input manifest line, defined once.

A manifest is a SageMaker Ground Truth *input manifest* (AWS docs, "Input manifest files"): UTF-8
JSON Lines, one JSON object per line, one line per data object to label. GT requires a ``source``
key (the object, as text) or a ``source-ref`` key (an S3 URI) and hands every key of the line to the
pre-annotation Lambda as ``dataObject``. This project always writes ``source`` holding the
**Orthanc instance ID** (:mod:`labeling.contracts.ids`); files are read and written by
:mod:`labeling.manifest.format`, built from Orthanc by :mod:`labeling.manifest.build`.

The keys of a line (:class:`ManifestLine`), in the order they are written:

=====================  =====  ===================================================================
``source``             str    Orthanc instance ID (required)
``labels``             list   the label schema's label names, in schema order (required)
``task_type``          str    ``classification`` | ``roi`` | ``classification+roi`` (required)
``schema``             str    the label schema's ``name`` (required)
``modality``           str    Modality (0008,0060) of the instance's series, e.g. ``DX``
``study_instance_uid`` str    StudyInstanceUID (0020,000D)
``series_instance_uid`` str   SeriesInstanceUID (0020,000E)
``sop_instance_uid``   str    SOPInstanceUID (0008,0018)
``rows``               int    Rows (0028,0010), PS3.3 C.7.6.3: when the builder knows it
``columns``            int    Columns (0028,0011), PS3.3 C.7.6.3: with ``rows``, never alone
``frames``             int    NumberOfFrames (0028,0008), PS3.3 C.7.6.6; 1 for a single-frame image
``patient_id``         str    PatientID (0010,0020): written only with ``--include-phi``
``study_date``         str    StudyDate (0008,0020), ``YYYYMMDD``: only with ``--include-phi``
``uncertain_policy``   str    the schema's ``uncertain_policy`` (``ignore`` | ``absent`` | ``present``):
                              written when the schema offers "uncertain"; absent means ``ignore``.
                              GT's post-label Lambda reads it from ``dataObject``
                              (:func:`recorded_uncertain_policy`); the portal reads its job's schema
=====================  =====  ===================================================================

Optional keys are left out of a line when unknown, never written as ``null``. Any other key is kept,
in order, in :attr:`ManifestLine.extra` and written back after the known keys, so a GT *output*
manifest (the input line plus ``<attr>`` and ``<attr>-metadata``, docs/architecture.md "The
label shape") survives ``read_manifest`` → ``write_manifest`` unchanged: the Ground Truth job, the portal
and training all read and write manifests through this module. A label attribute name must
therefore not be one of the keys above.


Image geometry (``rows``, ``columns``, ``frames``; :attr:`ManifestLine.geometry`) is what an answer
is checked against (:func:`labeling.contracts.answer.parse_answer` with ``geometry``): its size, its
frame, its points inside the image. Lines written before these keys existed, or by a builder whose
Orthanc does not index Rows/Columns (they are not among an instance's main DICOM tags, Orthanc Book
"Main DICOM Tags in DB"; 1.11+ can add them with ``ExtraMainDicomTags``, Debian's 1.10.1 cannot),
have no ``rows``/``columns``: readers must tolerate that (``geometry`` is None then).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Optional

from labeling.contracts.answer import DEFAULT_UNCERTAIN_POLICY, UNCERTAIN_POLICIES, check_uncertain_policy
from labeling.contracts.errors import describe_value
from labeling.contracts.geometry import ImageGeometry

TASK_TYPES: Final = ("classification", "roi", "classification+roi")
"""What a job asks for: image-level labels, ROIs, or both (the schema's and the line's ``task_type``)."""

REQUIRED_KEYS: Final = ("source", "labels", "task_type", "schema")
OPTIONAL_KEYS: Final = (
    "modality", "study_instance_uid", "series_instance_uid", "sop_instance_uid", "rows", "columns", "frames",
    "patient_id", "study_date", "uncertain_policy",
)
GEOMETRY_KEYS: Final = ("rows", "columns", "frames")
"""The image geometry keys (:class:`ImageGeometry`); integers >= 1."""
KNOWN_KEYS: Final = REQUIRED_KEYS + OPTIONAL_KEYS
PHI_KEYS: Final = ("patient_id", "study_date")
"""Keys that identify or date a person; written only with ``--include-phi``."""

_STR_OPTIONAL_KEYS: Final = tuple(k for k in OPTIONAL_KEYS if k not in GEOMETRY_KEYS)


class ManifestError(ValueError):
    """A manifest line or file is invalid; from :func:`read_manifest` the message starts
    ``<path>:<line>:`` (1-based line numbers, as an editor shows them)."""


@dataclass(frozen=True)
class ManifestLine:
    """One manifest line: one image to label (see the module docstring for every key).

    ``extra`` keeps the keys this class does not know (a GT output manifest's ``<attr>`` and
    ``<attr>-metadata``), in order, so reading and writing a line back changes nothing.
    """

    source: str
    labels: tuple[str, ...]
    task_type: str
    schema: str
    modality: Optional[str] = None
    study_instance_uid: Optional[str] = None
    series_instance_uid: Optional[str] = None
    sop_instance_uid: Optional[str] = None
    rows: Optional[int] = None
    columns: Optional[int] = None
    frames: Optional[int] = None
    patient_id: Optional[str] = None
    study_date: Optional[str] = None
    uncertain_policy: Optional[str] = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Accept any sequence of labels but store a tuple: lines are hashable, immutable values.
        if isinstance(self.labels, list):
            object.__setattr__(self, "labels", tuple(self.labels))
        problem = _line_problem(self)
        if problem:
            raise ManifestError(problem)

    @property
    def geometry(self) -> Optional[ImageGeometry]:
        """The recorded image geometry, or None when the line has no ``rows``/``columns`` (older
        manifests, or a builder whose Orthanc does not index them): readers must cope with None."""
        if self.rows is None or self.columns is None:
            return None
        return ImageGeometry(self.rows, self.columns, self.frames or 1)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the line: known keys first (in table order), then ``extra``."""
        out: dict[str, Any] = {
            "source": self.source,
            "labels": list(self.labels),
            "task_type": self.task_type,
            "schema": self.schema,
        }
        for key in OPTIONAL_KEYS:
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out.update(self.extra)
        return out

    def to_json(self) -> str:
        """One line of JSON (no newline). Non-ASCII stays readable UTF-8: GT reads UTF-8."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Any) -> ManifestLine:
        """Validate a parsed line; raises :class:`ManifestError` naming the key that is wrong."""
        if not isinstance(data, Mapping):
            raise ManifestError(f"a manifest line must be a JSON object, got {describe_value(data, json=True)}")
        if "source" not in data:
            hint = (" ('source-ref' lines point at S3 objects; this project's manifests carry the "
                    "Orthanc instance ID in 'source')") if "source-ref" in data else ""
            raise ManifestError(f"missing required key 'source'{hint}")
        for key in REQUIRED_KEYS[1:]:
            if key not in data:
                raise ManifestError(f"missing required key {key!r}")
        labels = data["labels"]
        if not isinstance(labels, list):
            raise ManifestError(f"'labels' must be a list of label names, got {describe_value(labels, json=True)}")
        known = {key: data[key] for key in KNOWN_KEYS if key in data}
        extra = {key: value for key, value in data.items() if key not in KNOWN_KEYS}
        known["labels"] = tuple(labels)
        for key in OPTIONAL_KEYS:
            if known.get(key, "") is None:
                raise ManifestError(f"{key!r} is null; leave the key out when the value is unknown")
        return cls(**known, extra=extra)


def _line_problem(line: ManifestLine) -> Optional[str]:
    """The first thing wrong with a line, as a message naming the key; None when it is valid."""
    if not isinstance(line.source, str) or not line.source.strip():
        return f"'source' must be a non-empty string (an Orthanc instance ID), got {describe_value(line.source, json=True)}"
    if not line.labels:
        return "'labels' must name at least one label"
    for index, name in enumerate(line.labels):
        if not isinstance(name, str) or not name.strip():
            return f"'labels'[{index}] must be a non-empty string, got {describe_value(name, json=True)}"
    if len(set(line.labels)) != len(line.labels):
        return f"'labels' has duplicates: {list(line.labels)!r}"
    if line.task_type not in TASK_TYPES:
        return f"'task_type' must be one of {', '.join(map(repr, TASK_TYPES))}, got {describe_value(line.task_type, json=True)}"
    if not isinstance(line.schema, str) or not line.schema.strip():
        return f"'schema' must be a non-empty string (the label schema's name), got {describe_value(line.schema, json=True)}"
    for key in _STR_OPTIONAL_KEYS:
        value = getattr(line, key)
        if value is not None and not isinstance(value, str):
            return f"{key!r} must be a string, got {describe_value(value, json=True)}"
    for key in GEOMETRY_KEYS:
        value = getattr(line, key)
        # bool is an int subclass: `"frames": true` is a mistake, not 1.
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            return f"{key!r} must be a positive integer, got {describe_value(value, json=True)}"
    if line.uncertain_policy is not None and line.uncertain_policy not in UNCERTAIN_POLICIES:
        return f"'uncertain_policy' must be one of {', '.join(map(repr, UNCERTAIN_POLICIES))}, got " \
               f"{describe_value(line.uncertain_policy, json=True)}"
    if (line.rows is None) != (line.columns is None):
        return "'rows' and 'columns' go together: give both or neither"
    clash = sorted(set(line.extra) & set(KNOWN_KEYS))
    if clash:
        return f"extra keys {clash} clash with manifest keys"
    return None


def recorded_geometry(line: Mapping[str, Any]) -> Optional[ImageGeometry]:
    """The image geometry a manifest line (or GT's ``dataObject``, the same line) records; None when
    it has neither ``rows`` nor ``columns`` (older manifests). ContractError names a bad key."""
    if line.get("rows") is None and line.get("columns") is None:
        return None
    return ImageGeometry.from_dict({key: line[key] for key in GEOMETRY_KEYS if line.get(key) is not None}, "")


def recorded_uncertain_policy(line: Mapping[str, Any]) -> str:
    """What "uncertain" counts as for a manifest line (or GT's ``dataObject``): its ``uncertain_policy``,
    ``ignore`` when it has none. ContractError when the value is not a policy."""
    return check_uncertain_policy(line.get("uncertain_policy", DEFAULT_UNCERTAIN_POLICY))
