"""labeling/manifest/ (format, filters, exclusions, query, build, cli): the manifest format, filter parsing,
exclusion rules and the query plan.

The builder runs here against an in-memory fake of Orthanc's ``/tools/find`` (exact, list, range and
wildcard matching over the study/series/instance hierarchy, Expand answers shaped like Orthanc
1.10.1's); tests/integration/test_manifest.py runs it against the real server.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import pytest

from labeling.manifest import cli as mcli
from labeling.manifest import exclusions as mx
from labeling.manifest import filters as mf
from labeling.manifest import query as mq
from labeling.manifest.build import build_manifest
from labeling.manifest.filters import FilterError, ManifestFilters, parse_filters
from labeling.manifest.format import ManifestError, ManifestLine, read_manifest, write_manifest

LABELS = ("Opacity", "Device", "Effusion")


def line(source: str = "aaaaaaaa-bbbbbbbb-cccccccc-dddddddd-eeeeeeee", **kw: Any) -> ManifestLine:
    base = dict(source=source, labels=LABELS, task_type="classification+roi", schema="chest-xray")
    base.update(kw)
    return ManifestLine(**base)


# ------------------------------------------------------------------------------ line format


def test_line_writes_required_keys_first_and_omits_unknown_optionals():
    text = line(modality="DX", study_instance_uid="1.2.3", frames=1).to_json()
    data = json.loads(text)
    assert list(data) == ["source", "labels", "task_type", "schema", "modality", "study_instance_uid", "frames"]
    assert data["labels"] == list(LABELS)
    assert "\n" not in text and "null" not in text


def test_line_round_trips_through_dict_with_extra_keys_in_order():
    original = line(
        modality="CR", study_instance_uid="1.2", series_instance_uid="1.2.3", sop_instance_uid="1.2.3.4",
        frames=3, patient_id="P1", study_date="20240131",
        extra={"chest-labels": {"labels": [{"name": "Opacity", "present": True}]},
               "chest-labels-metadata": {"type": "groundtruth/custom", "job-name": "j1"}},
    )
    again = ManifestLine.from_dict(json.loads(original.to_json()))
    assert again == original
    assert list(again.to_dict())[-2:] == ["chest-labels", "chest-labels-metadata"]


def test_output_manifest_line_survives_read_and_write_byte_for_byte(tmp_path: Path):
    # A GT output line: input keys + <attr> + <attr>-metadata, in GT's own key order for those.
    text = ('{"source":"id-1","labels":["Opacity"],"task_type":"classification","schema":"s",'
            '"modality":"DX","chest":{"labels":[{"name":"Opacity","present":true,"confidence":0.9}],'
            '"annotators":3},"chest-metadata":{"type":"groundtruth/custom","job-name":"j",'
            '"human-annotated":"yes","creation-date":"2026-01-31T12:00:00+0000","confidence":0.9}}\n')
    src = tmp_path / "output.manifest"
    src.write_text(text, encoding="utf-8")
    out = tmp_path / "copy.manifest"
    write_manifest(read_manifest(src), out)
    assert out.read_text(encoding="utf-8") == text


def test_write_then_read_keeps_lines_and_unicode(tmp_path: Path):
    lines = [line(f"id-{i}", sop_instance_uid=f"1.2.{i}", extra={"note": "Épanchement ✓"}) for i in range(5)]
    path = tmp_path / "sub" / "m.jsonl"
    assert write_manifest(lines, path) == 5
    assert read_manifest(path) == lines
    assert "Épanchement ✓" in path.read_text(encoding="utf-8")


def test_write_is_all_or_nothing(tmp_path: Path):
    path = tmp_path / "m.jsonl"
    path.write_text("previous\n")

    def lines():
        yield line("id-1")
        raise RuntimeError("query failed half way")

    with pytest.raises(RuntimeError):
        write_manifest(lines(), path)
    assert path.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["m.jsonl"]  # no temporary file left behind


def test_write_to_a_fifo_writes_in_place_and_keeps_the_fifo(tmp_path: Path):
    # /dev/null, /dev/stdout and FIFOs must be written, not renamed over (that replaces the node).
    import os
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    assert write_manifest([line("id-1"), line("id-2")], fifo) == 2
    reader.join(timeout=10)
    assert fifo.is_fifo()
    assert received and received[0].count(b"\n") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_write_to_a_directory_is_refused(tmp_path: Path):
    with pytest.raises(IsADirectoryError):
        write_manifest([line()], tmp_path)


@pytest.mark.parametrize("kwargs, message", [
    ({"source": ""}, "'source' must be a non-empty string"),
    ({"labels": ()}, "'labels' must name at least one label"),
    ({"labels": ("A", "A")}, "duplicates"),
    ({"labels": ("A", 3)}, "'labels'[1] must be a non-empty string, got number 3"),
    ({"task_type": "detection"}, "'task_type' must be one of"),
    ({"schema": " "}, "'schema' must be a non-empty string"),
    ({"frames": 0}, "'frames' must be a positive integer"),
    ({"frames": True}, "'frames' must be a positive integer, got boolean true"),
    ({"modality": 5}, "'modality' must be a string"),
    ({"extra": {"source": "x"}}, "clash with manifest keys"),
    ({"uncertain_policy": "zeros"}, "'uncertain_policy' must be one of 'ignore', 'absent', 'present', got string"),
])
def test_invalid_lines_are_refused_with_the_key_named(kwargs, message):
    with pytest.raises(ManifestError, match=None) as info:
        line(**kwargs)
    assert message in str(info.value)


# --------------------------------------------------------------------- read errors + lines


def _write(tmp_path: Path, *rows: str | bytes) -> Path:
    path = tmp_path / "m.jsonl"
    data = b"".join((r if isinstance(r, bytes) else r.encode()) + b"\n" for r in rows)
    path.write_bytes(data)
    return path


GOOD = '{"source":"id-%d","labels":["A"],"task_type":"roi","schema":"s"}'


@pytest.mark.parametrize("bad, message", [
    ('{"source": "x", ', ":2: invalid JSON at column"),
    ('["id-9"]', ":2: a manifest line must be a JSON object, got a list"),
    ('{"labels":["A"],"task_type":"roi","schema":"s"}', ":2: missing required key 'source'"),
    ('{"source-ref":"s3://b/k","labels":["A"],"task_type":"roi","schema":"s"}', "'source-ref' lines point at S3"),
    ('{"source":"id-9","task_type":"roi","schema":"s"}', ":2: missing required key 'labels'"),
    ('{"source":"id-9","labels":"A","task_type":"roi","schema":"s"}', ":2: 'labels' must be a list"),
    ('{"source":"id-9","labels":["A"],"task_type":"roi","schema":"s","frames":null}', ":2: 'frames' is null"),
    ('{"source":"id-9","labels":["A"],"task_type":"box","schema":"s"}', ":2: 'task_type' must be one of"),
    ("", ":2: empty line"),
    (b'{"source":"\xff"}', ":2: not UTF-8"),
])
def test_read_errors_name_the_file_and_line(tmp_path: Path, bad, message):
    path = _write(tmp_path, GOOD % 1, bad, GOOD % 3)
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    assert str(info.value).startswith(f"{path}:") or "cannot read" in str(info.value)
    assert message in str(info.value)


def test_duplicate_source_names_both_lines(tmp_path: Path):
    path = _write(tmp_path, GOOD % 1, GOOD % 2, GOOD % 1)
    with pytest.raises(ManifestError, match=r":3: duplicate source 'id-1' \(first on line 1\)"):
        read_manifest(path)
    assert len(read_manifest(path, allow_duplicates=True)) == 3


def test_read_missing_file_is_a_manifest_error(tmp_path: Path):
    with pytest.raises(ManifestError, match="cannot read file"):
        read_manifest(tmp_path / "nope.jsonl")


def test_read_accepts_a_utf8_bom_and_no_final_newline(tmp_path: Path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (GOOD % 1).encode() + b"\n" + (GOOD % 2).encode())
    assert [ln.source for ln in read_manifest(path)] == ["id-1", "id-2"]


# ---------------------------------------------------------------------------------- filters


def test_queries_for_each_level():
    filters = parse_filters(
        modalities=["dx", "CR,dx"], study_uids=["1.2.3"], series_uids=["1.2.3.4", "1.2.3.5"],
        patient_id="SYN7-*", study_date_from="2024-01-01", study_date_to="20240131",
    )
    assert filters.modalities == ("DX", "CR")
    assert filters.study_query() == {
        "StudyInstanceUID": "1.2.3", "PatientID": "SYN7-*", "StudyDate": "20240101-20240131",
    }
    assert filters.series_query() == {
        **filters.study_query(), "Modality": "DX\\CR", "SeriesInstanceUID": "1.2.3.4\\1.2.3.5",
    }
    assert not filters.only_series_uids_narrow
    assert ManifestFilters(series_uids=("1.2",)).only_series_uids_narrow
    assert ManifestFilters().series_query() == {}


@pytest.mark.parametrize("start, end, expected", [
    (dt.date(2024, 1, 1), dt.date(2024, 2, 29), "20240101-20240229"),
    (dt.date(2024, 1, 1), None, "20240101-"),
    (None, dt.date(2024, 1, 1), "-20240101"),
    (None, None, None),
])
def test_dicom_date_range(start, end, expected):
    assert mf.dicom_date_range(start, end) == expected


@pytest.mark.parametrize("text, expected", [
    ("20240229", dt.date(2024, 2, 29)),
    ("2024-02-29", dt.date(2024, 2, 29)),
    (" 19991231 ", dt.date(1999, 12, 31)),
])
def test_parse_dicom_date(text, expected):
    assert mf.parse_dicom_date(text, "--study-date-from") == expected


@pytest.mark.parametrize("text, message", [
    ("20230229", "is not a calendar date"),
    ("2024-13-01", "is not a calendar date"),
    ("2024/01/01", "use YYYYMMDD or YYYY-MM-DD"),
    ("240101", "use YYYYMMDD or YYYY-MM-DD"),
    ("", "use YYYYMMDD or YYYY-MM-DD"),
])
def test_bad_dates_name_the_flag(text, message):
    with pytest.raises(FilterError) as info:
        parse_filters(study_date_to=text)
    assert info.value.flag == "--study-date-to"
    assert str(info.value).startswith("--study-date-to: ") and message in str(info.value)


@pytest.mark.parametrize("kwargs, flag, message", [
    ({"study_date_from": "20240201", "study_date_to": "20240101"}, "--study-date-from", "is after --study-date-to"),
    ({"modalities": ["SR"]}, "--modality", "SR objects are structured reports, not images"),
    ({"modalities": ["rtdose"]}, "--modality", "RTDOSE objects are RT dose grids"),
    ({"modalities": ["D X"]}, "--modality", "is not a DICOM modality code"),
    ({"modalities": ["DX,"]}, "--modality", "empty modality"),
    ({"study_uids": ["1.2.03"]}, "--study-uid", "is not a DICOM UID"),
    ({"series_uids": ["1." + "2" * 70]}, "--series-uid", "is not a DICOM UID"),
    ({"series_uids": ["abc"]}, "--series-uid", "is not a DICOM UID"),
    ({"patient_id": "A\\B"}, "--patient-id", "backslash"),
    ({"patient_id": ""}, "--patient-id", "must not be empty"),
    ({"patient_id": "x" * 65}, "--patient-id", "at most 64"),
    ({"metadata": ["Origin"]}, "--metadata", "is not KEY=VALUE"),
    ({"metadata": ["bad key=1"]}, "--metadata", "is not an Orthanc metadata name"),
    ({"metadata": ["A=1", "A=2"]}, "--metadata", "A is given twice"),
])
def test_bad_filters_raise_one_error_naming_the_flag(kwargs, flag, message):
    with pytest.raises(FilterError) as info:
        parse_filters(**kwargs)
    assert info.value.flag == flag
    assert str(info.value).startswith(f"{flag}: ")
    assert message in str(info.value)


def test_metadata_filters_keep_empty_values_and_drop_exact_repeats():
    assert mf.parse_metadata_filters(["Origin=RestApi", "1025=", "Origin=RestApi"]) == (
        ("Origin", "RestApi"), ("1025", ""))


# ------------------------------------------------------------------------- exclusion table


@pytest.mark.parametrize("modality, excluded", [
    ("SR", True), ("KO", True), ("PR", True), ("RTSTRUCT", True), ("RTPLAN", True), ("RTDOSE", True),
    ("SEG", True), ("DOC", True), ("ECG", True), ("REG", True),
    ("DX", False), ("CR", False), ("CT", False), ("MR", False), ("OT", False), (None, False), ("", False),
])
def test_modality_exclusion(modality, excluded):
    reason = mx.modality_exclusion(modality)
    assert (reason is not None) == excluded
    if reason:
        assert reason.startswith(f"modality {modality}: ")


@pytest.mark.parametrize("uid, fragment", [
    ("1.2.840.10008.5.1.4.1.1.88.11", "structured report"),
    ("1.2.840.10008.5.1.4.1.1.88.33", "structured report"),
    ("1.2.840.10008.5.1.4.1.1.88.59", "key object selection"),
    ("1.2.840.10008.5.1.4.1.1.11.1", "presentation state"),
    ("1.2.840.10008.5.1.4.1.1.104.1", "Encapsulated PDF Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.2", "radiotherapy object"),
    ("1.2.840.10008.5.1.4.1.1.481.3", "radiotherapy object"),
    ("1.2.840.10008.5.1.4.1.1.66.4", "segmentation"),
    ("1.2.840.10008.5.1.4.1.1.9.1.1", "waveform"),
    ("1.2.840.10008.5.1.4.1.1.66", "raw data"),
])
def test_non_image_sop_classes(uid, fragment):
    reason = mx.sop_class_exclusion(uid)
    assert reason is not None and fragment in reason and uid in reason


@pytest.mark.parametrize("uid", [
    "1.2.840.10008.5.1.4.1.1.1.1",     # DX for presentation
    "1.2.840.10008.5.1.4.1.1.1",       # CR
    "1.2.840.10008.5.1.4.1.1.7",       # secondary capture
    "1.2.840.10008.5.1.4.1.1.481.1",   # RT Image: an image although under the RT root
    "1.2.840.10008.5.1.4.1.1.1048",    # component boundary: not the '.104' family
    "1.2.826.0.1.3680043.9.9999.1",    # private: kept, never silently dropped
    None, "",
])
def test_image_and_unknown_sop_classes_are_kept(uid):
    assert mx.sop_class_exclusion(uid) is None


def test_exclusion_table_agrees_with_pydicom_sop_class_names():
    from pydicom.uid import UID_dictionary

    storage = {uid: name for uid, (name, kind, *_rest) in UID_dictionary.items()
               if kind == "SOP Class" and uid.startswith("1.2.840.10008.5.1.4.1.1.")}
    non_image_words = ("SR Storage", "Waveform Storage", "Presentation State Storage", "Encapsulated",
                       "RT Plan", "RT Dose", "RT Structure", "Segmentation Storage", "Key Object")
    for uid, name in storage.items():
        if any(word in name for word in non_image_words):
            assert mx.sop_class_exclusion(uid), f"{name} ({uid}) should be excluded"
        if name.endswith("Image Storage") or "Image Storage -" in name:
            assert mx.sop_class_exclusion(uid) is None, f"{name} ({uid}) is an image"


def test_non_image_modality_codes_are_valid_cs_values():
    assert all(mf._MODALITY_RE.match(code) for code in mx.NON_IMAGE_MODALITIES)
    assert not set(mx.NON_IMAGE_MODALITIES) & mx.IMAGE_MODALITIES


@pytest.mark.parametrize("modality, check", [
    ("DX", False), ("CT", False), ("SR", False), ("OT", True), (None, True), ("", True), ("XYZ", True),
])
def test_sop_class_is_read_only_where_modality_does_not_tell(modality, check):
    assert mx.needs_sop_class_check(modality) is check


# ------------------------------------------------------------------ builder on a fake Orthanc


class FakeOrthanc:
    """Orthanc 1.10.1's ``/tools/find`` and ``/tools/bulk-content`` over an in-memory hierarchy.

    ``find`` matches like Orthanc (a tag of the resource or of any parent; exact, ``\\`` lists,
    ``A-B`` date ranges, ``*``/``?`` wildcards); ``bulk-content`` answers the named resources that
    exist (unknown IDs left out), with metadata on request. Every call is counted.
    """

    def __init__(self) -> None:
        self.studies: dict[str, dict] = {}
        self.series: dict[str, dict] = {}
        self.instances: dict[str, dict] = {}
        self.metadata: dict[str, dict[str, str]] = {}
        self.calls: Counter = Counter()
        self.bulk_sizes: list[int] = []
        self.no_bulk_content = False

    def add(self, *, patient="P1", study="1.1", date="20240101", series="1.1.1", modality="DX",
            series_number="1", sop="1.1.1.1", number="1", frames=None,
            sop_class: Optional[str] = "1.2.840.10008.5.1.4.1.1.1.1", **metadata: str) -> str:
        study_id, series_id, instance_id = f"st-{study}", f"se-{series}", f"in-{sop}"
        self.studies.setdefault(study_id, {"ID": study_id, "Type": "Study", "Series": [],
                                           "MainDicomTags": {"StudyInstanceUID": study, "StudyDate": date},
                                           "PatientMainDicomTags": {"PatientID": patient}})
        series_tags = {"SeriesInstanceUID": series, "SeriesNumber": series_number}
        if modality is not None:
            series_tags["Modality"] = modality
        if series_id not in self.series:
            self.series[series_id] = {"ID": series_id, "Type": "Series", "ParentStudy": study_id,
                                      "Instances": [], "MainDicomTags": series_tags}
            self.studies[study_id]["Series"].append(series_id)
        tags = {"SOPInstanceUID": sop, "InstanceNumber": number}
        if frames is not None:
            tags["NumberOfFrames"] = frames
        self.instances[instance_id] = {"ID": instance_id, "Type": "Instance", "ParentSeries": series_id,
                                       "MainDicomTags": tags}
        self.series[series_id]["Instances"].append(instance_id)
        self.metadata[instance_id] = {"Origin": "RestApi", **metadata}
        if sop_class is not None:
            self.metadata[instance_id]["SopClassUid"] = sop_class
        return instance_id

    # -- what the builder calls
    def find(self, level, query, *, expand=True, limit=None, since=None, case_sensitive=True):
        self.calls[f"find {level}"] += 1
        assert expand
        pool = {"Instance": self.instances, "Series": self.series, "Study": self.studies}[level]
        return [json.loads(json.dumps(r)) for r in pool.values() if self._matches(r, level, query)]

    def request(self, method, path, *, json=None, ok_statuses=(), **kwargs):
        assert (method, path) == ("POST", "/tools/bulk-content")
        if self.no_bulk_content:  # an Orthanc older than the route
            return SimpleNamespace(status_code=404, json=lambda: {})
        self.calls["bulk"] += 1
        self.bulk_sizes.append(len(json["Resources"]))
        answer = []
        for resource_id in json["Resources"]:
            for pool in (self.instances, self.series, self.studies):
                if resource_id in pool:
                    item = dict(pool[resource_id])
                    if json.get("Metadata", True):
                        item["Metadata"] = dict(self.metadata.get(resource_id, {}))
                    answer.append(item)
        return SimpleNamespace(status_code=200, json=lambda: answer)

    # -- matching, as Orthanc does: a tag of the resource or of any parent
    def _tags(self, resource, level):
        tags: dict[str, str] = {}
        if level == "Instance":
            tags.update(resource["MainDicomTags"])
            resource, level = self.series[resource["ParentSeries"]], "Series"
        if level == "Series":
            tags.update(resource["MainDicomTags"])
            resource = self.studies[resource["ParentStudy"]]
        tags.update(resource["MainDicomTags"])
        tags.update(resource["PatientMainDicomTags"])
        return tags

    def _matches(self, resource, level, query):
        tags = self._tags(resource, level)
        for key, wanted in query.items():
            value = tags.get(key, "")
            if key == "StudyDate" and "-" in wanted:
                low, high = wanted.split("-")
                if not value or (low and value < low) or (high and value > high):
                    return False
            elif "\\" in wanted:
                if value not in wanted.split("\\"):
                    return False
            elif not fnmatch.fnmatchcase(value, wanted):
                return False
        return True


def build(fake: FakeOrthanc, **kw: Any) -> mq.BuildResult:
    return build_manifest(fake, schema_name="chest-xray", labels=LABELS, task_type="classification+roi", **kw)


@pytest.fixture
def mixed() -> FakeOrthanc:
    fake = FakeOrthanc()
    # study 1.2 is dated earlier than 1.1: it must come first
    fake.add(study="1.1", date="20240301", series="1.1.1", sop="1.1.1.2", number="2")
    fake.add(study="1.1", date="20240301", series="1.1.1", sop="1.1.1.10", number="10")
    fake.add(study="1.1", date="20240301", series="1.1.1", sop="1.1.1.1", number="1")
    fake.add(study="1.1", date="20240301", series="1.1.9", series_number="9", sop="1.1.9.1",
             modality="SR", sop_class="1.2.840.10008.5.1.4.1.1.88.11")
    fake.add(patient="P2", study="1.2", date="20240101", series="1.2.1", modality="CR", sop="1.2.1.1",
             sop_class="1.2.840.10008.5.1.4.1.1.1")
    fake.add(patient="P2", study="1.2", date="20240101", series="1.2.2", series_number="2", modality="OT",
             sop="1.2.2.1", sop_class="1.2.840.10008.5.1.4.1.1.7", frames="3")
    fake.add(patient="P2", study="1.2", date="20240101", series="1.2.3", series_number="3", modality="OT",
             sop="1.2.3.1", sop_class="1.2.840.10008.5.1.4.1.1.104.1")
    fake.add(patient="P3", study="1.3", date="", series="1.3.1", modality=None, sop="1.3.1.1",
             sop_class="1.2.840.10008.5.1.4.1.1.7")
    fake.add(patient="P3", study="1.3", date="", series="1.3.2", series_number="2", modality="RTDOSE",
             sop="1.3.2.1", sop_class="1.2.840.10008.5.1.4.1.1.481.2")
    fake.add(patient="P3", study="1.3", date="", series="1.3.3", series_number="3", modality=None,
             sop="1.3.3.1", sop_class="1.2.840.10008.5.1.4.1.1.88.33")  # an SR without Modality
    return fake


PDF_REASON = "SOP class Encapsulated PDF Storage (1.2.840.10008.5.1.4.1.1.104.1): encapsulated document"
SR_CLASS_REASON = ("SOP class Comprehensive SR Storage (1.2.840.10008.5.1.4.1.1.88.33): "
                   "structured report")


def test_builder_sorts_excludes_and_counts_in_one_find_and_bulk_reads(mixed: FakeOrthanc):
    result = build(mixed)
    assert [ln.sop_instance_uid for ln in result.lines] == [
        "1.2.1.1", "1.2.2.1",                  # 20240101: series 1 then series 2 (OT secondary capture)
        "1.1.1.1", "1.1.1.2", "1.1.1.10",      # 20240301: instance numbers numerically
        "1.3.1.1",                             # undated study last
    ]
    assert result.matched == 10
    assert result.excluded == Counter({
        "modality SR: structured reports": 1,
        "modality RTDOSE: RT dose grids": 1,
        PDF_REASON: 1,
        SR_CLASS_REASON: 1,
    })
    assert result.excluded_examples["modality SR: structured reports"] == ["in-1.1.9.1"]
    # one find; bulk reads: the 3 studies, the 4 instances of OT / Modality-less series with their
    # metadata (SOP class), the 4 DX/CR instances without
    assert mixed.calls == Counter({"find Series": 1, "bulk": 3})
    assert sorted(mixed.bulk_sizes) == [3, 4, 4]
    assert result.requests == Counter({"find": 1, "bulk": 3})
    second = result.lines[1].to_dict()
    assert second == {
        "source": "in-1.2.2.1", "labels": list(LABELS), "task_type": "classification+roi",
        "schema": "chest-xray", "modality": "OT", "study_instance_uid": "1.2",
        "series_instance_uid": "1.2.2", "sop_instance_uid": "1.2.2.1", "frames": 3,
    }
    assert "modality" not in result.lines[-1].to_dict()  # no Modality: key left out, not null
    assert result.warnings == [] and result.images == 6


def test_the_schemas_uncertain_policy_goes_on_every_line_when_given(mixed: FakeOrthanc):
    """The policy GT's post-label Lambda reads from dataObject (labeling/gt/postlabel.py); a schema
    without "uncertain" writes no key, so older manifests and such lines read alike."""
    from labeling.contracts.manifest_line import recorded_uncertain_policy
    from labeling.contracts.schema import LabelSchema

    offered = LabelSchema.from_dict({"name": "chest-xray", "task_type": "classification+roi",
                                     "labels": [{"name": n} for n in LABELS], "uncertain": True,
                                     "uncertain_policy": "absent"})
    lines = build(mixed, uncertain_policy=offered.line_uncertain_policy).lines
    assert lines and all(ln.to_dict()["uncertain_policy"] == "absent" for ln in lines)
    assert ManifestLine.from_dict(json.loads(lines[0].to_json())) == lines[0]
    no_uncertain = LabelSchema.from_dict({"name": "chest-xray", "task_type": "roi", "labels": [{"name": "A"}]})
    plain = build(mixed, uncertain_policy=no_uncertain.line_uncertain_policy).lines
    assert all("uncertain_policy" not in ln.to_dict() for ln in plain)
    assert recorded_uncertain_policy(plain[0].to_dict()) == "ignore"
    assert recorded_uncertain_policy(lines[0].to_dict()) == "absent"
    assert offered.line_policy_problem(None) == ("uncertain_policy: 'ignore' differs from schema 'chest-xray''s "
                                                 "'absent'; rebuild the manifest with this schema")
    assert offered.line_policy_problem("absent") is None


def test_phi_only_on_request(mixed: FakeOrthanc):
    assert all("patient_id" not in ln.to_dict() and "study_date" not in ln.to_dict() for ln in build(mixed).lines)
    with_phi = build(mixed, include_phi=True).lines
    assert (with_phi[0].patient_id, with_phi[0].study_date) == ("P2", "20240101")
    assert with_phi[-1].study_date is None  # undated study: key absent


def test_order_is_stable_whatever_the_answer_order(mixed: FakeOrthanc):
    first = [ln.source for ln in build(mixed).lines]
    for pool in (mixed.instances, mixed.series, mixed.studies):
        items = list(pool.items())[::-1]
        pool.clear()
        pool.update(items)
    for one in mixed.series.values():
        one["Instances"].reverse()
    assert [ln.source for ln in build(mixed).lines] == first


def test_filters_reach_the_query(mixed: FakeOrthanc):
    result = build(mixed, filters=parse_filters(modalities=["dx"]))
    assert [ln.sop_instance_uid for ln in result.lines] == ["1.1.1.1", "1.1.1.2", "1.1.1.10"]
    assert result.matched == 3 and not result.excluded
    result = build(mixed, filters=parse_filters(study_date_to="2024-02-01"))
    assert {ln.study_instance_uid for ln in result.lines} == {"1.2"}
    result = build(mixed, filters=parse_filters(patient_id="P*", modalities=["CR", "OT"]))
    assert [ln.sop_instance_uid for ln in result.lines] == ["1.2.1.1", "1.2.2.1"]
    assert result.excluded == Counter({PDF_REASON: 1})
    result = build(mixed, filters=parse_filters(series_uids=["1.1.1"]))
    assert [ln.sop_instance_uid for ln in result.lines] == ["1.1.1.1", "1.1.1.2", "1.1.1.10"]


def test_nothing_matched_sends_no_bulk_read(mixed: FakeOrthanc):
    result = build(mixed, filters=parse_filters(patient_id="NOBODY"))
    assert result.lines == [] and result.matched == 0
    assert mixed.calls == Counter({"find Series": 1})


def test_series_of_non_image_modality_are_not_read(mixed: FakeOrthanc):
    result = build(mixed, filters=parse_filters(patient_id="P3"))
    assert [ln.sop_instance_uid for ln in result.lines] == ["1.3.1.1"]
    assert sorted(mixed.bulk_sizes) == [1, 2]  # 1 study; the RTDOSE instance is never read


def test_check_all_sop_classes_reads_metadata_for_every_instance(mixed: FakeOrthanc):
    mixed.add(study="1.1", date="20240301", series="1.1.1", sop="1.1.1.99", number="99",
              sop_class="1.2.840.10008.5.1.4.1.1.88.22")  # an SR filed in a DX series
    assert "in-1.1.1.99" in {ln.source for ln in build(mixed).lines}  # DX: not read by default
    mixed.bulk_sizes.clear()
    result = build(mixed, check_all_sop_classes=True)
    assert "in-1.1.1.99" not in {ln.source for ln in result.lines}
    assert result.excluded["SOP class Enhanced SR Storage (1.2.840.10008.5.1.4.1.1.88.22): structured report"] == 1
    assert sorted(mixed.bulk_sizes) == [3, 9]


def test_limit_keeps_the_first_lines_in_order(mixed: FakeOrthanc):
    result = build(mixed, limit=2)
    assert [ln.sop_instance_uid for ln in result.lines] == ["1.2.1.1", "1.2.2.1"]
    assert result.limited_out == 4 and result.images == 6
    with pytest.raises(ValueError):
        build(mixed, limit=0)


def test_resources_deleted_after_the_find_are_skipped_and_counted(mixed: FakeOrthanc):
    class Deleting(FakeOrthanc):
        def find(self, level, query, **kw):
            answer = super().find(level, query, **kw)
            del self.instances["in-1.1.1.2"]   # deleted between the find and the bulk read
            del self.studies["st-1.3"]
            return answer

    fake = Deleting()
    fake.__dict__.update(mixed.__dict__)
    result = build(fake)
    assert [ln.sop_instance_uid for ln in result.lines] == ["1.2.1.1", "1.2.2.1", "1.1.1.1", "1.1.1.10"]
    assert result.vanished == 3  # one instance, and the two readable instances of the deleted study
    assert any("deleted while" in w for w in result.warnings)


def test_an_orthanc_without_bulk_content_gets_a_clear_error(mixed: FakeOrthanc):
    mixed.no_bulk_content = True
    with pytest.raises(RuntimeError, match="no /tools/bulk-content"):
        build(mixed)


def test_unknown_sop_class_is_kept_and_warned():
    fake = FakeOrthanc()
    fake.add(modality="OT", sop_class=None)
    result = build(fake)
    assert len(result.lines) == 1 and result.unknown_sop_class == 1
    assert any("no SopClassUid metadata" in w for w in result.warnings)


def test_bulk_reads_are_chunked_for_parallel_requests():
    assert mq.chunks([]) == []
    assert [len(c) for c in mq.chunks([str(i) for i in range(150)])] == [150]
    assert [len(c) for c in mq.chunks([str(i) for i in range(1000)])] == [250] * 4
    sizes = [len(c) for c in mq.chunks([str(i) for i in range(20_001)])]
    assert max(sizes) == mq.BULK_CHUNK_MAX and sum(sizes) == 20_001
    ids = [str(i) for i in range(999)]
    assert [i for c in mq.chunks(ids) for i in c] == ids


def test_metadata_filter_uses_the_bulk_metadata_without_more_requests():
    fake = FakeOrthanc()
    for i in range(1, 21):
        fake.add(study=f"1.{i}", date=f"2024{1 + i % 12:02d}01", series=f"1.{i}.1", sop=f"1.{i}.1.1",
                 **({"1030": "batch-a"} if i % 4 == 0 else {}))
    result = build(fake, filters=parse_filters(metadata=["1030=batch-a"]))
    assert sorted(ln.sop_instance_uid for ln in result.lines) == sorted(f"1.{i}.1.1" for i in (4, 8, 12, 16, 20))
    assert result.metadata_mismatch == 15
    assert result.requests == Counter({"find": 1, "bulk": 2})
    both = build(fake, filters=parse_filters(metadata=["1030=batch-a", "Origin=RestApi"]))
    assert len(both.lines) == 5
    assert build(fake, filters=parse_filters(metadata=["Origin=DicomProtocol"])).lines == []


def test_metadata_name_no_instance_has_is_warned():
    fake = FakeOrthanc()
    fake.add()
    result = build(fake, filters=parse_filters(metadata=["Orign=RestApi"]))
    assert not result.lines
    assert any("--metadata Orign" in w for w in result.warnings)


# ------------------------------------------------------------------------------------- CLI


def _cli(capsys, *argv: str) -> tuple[int, str]:
    from labeling.cli import main

    code = main(["manifest", *argv])
    return code, capsys.readouterr().err


SCHEMA = str(Path(__file__).resolve().parents[2] / "schemas" / "chest-xray.yaml")


@pytest.mark.parametrize("argv, flag", [
    (["--modality", "SR"], "--modality"),
    (["--study-date-from", "2024-02-30"], "--study-date-from"),
    (["--series-uid", "x.y"], "--series-uid"),
    (["--metadata", "nokey"], "--metadata"),
])
def test_cli_bad_filter_is_one_line_naming_the_flag_exit_2(capsys, tmp_path, argv, flag):
    code, err = _cli(capsys, "--schema", SCHEMA, "--out", str(tmp_path / "m.jsonl"), *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"manifest: error: {flag}: ")
    assert not (tmp_path / "m.jsonl").exists()


def test_cli_bad_schema_and_missing_connection_exit_2(capsys, tmp_path, monkeypatch):
    for var in ("ORTHANC_URL", "ORTHANC_USERNAME", "ORTHANC_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    code, err = _cli(capsys, "--schema", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "m.jsonl"))
    assert code == 2 and err.startswith("manifest: error: --schema: ") and "cannot read file" in err
    code, err = _cli(capsys, "--schema", SCHEMA, "--out", str(tmp_path / "m.jsonl"))
    assert code == 2 and err.startswith("manifest: error: Orthanc URL: pass --orthanc-url")


def test_cli_limit_must_be_positive(capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        _cli(capsys, "--schema", SCHEMA, "--out", str(tmp_path / "m"), "--limit", "0")
    assert info.value.code == 2


def test_the_index_is_used_unless_a_narrow_query_has_none_saved(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("MANIFEST_INDEX_FILE", raising=False)
    from labeling.manifest.index import default_index_file

    url = "http://127.0.0.1:8042"
    saved = default_index_file(url)
    assert saved.parent == tmp_path / "dicom-annotate" / "manifest-index"
    assert default_index_file(url + "/") == saved and default_index_file("http://other:8042") != saved
    broad, narrow = parse_filters(modalities=["DX"]), parse_filters(patient_id="P1")
    assert mcli.choose_index(broad, url, None, False) == (True, saved)
    assert mcli.choose_index(narrow, url, None, False) == (False, saved)  # one find reads less
    saved.parent.mkdir(parents=True)
    saved.write_text("{}")
    assert mcli.choose_index(narrow, url, None, False) == (True, saved)   # replaying changes is cheaper
    assert mcli.choose_index(narrow, url, tmp_path / "x.json", False) == (False, tmp_path / "x.json")
    assert mcli.choose_index(broad, url, None, True) == (True, None)
    assert mcli.choose_index(narrow, url, None, True) == (False, None)


def test_the_local_stacks_index_file_wins_over_the_user_cache(tmp_path, monkeypatch):
    from labeling.manifest.index import default_index_file

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MANIFEST_INDEX_FILE", str(tmp_path / "stack" / "manifest-index.json"))
    assert default_index_file("http://127.0.0.1:8042") == tmp_path / "stack" / "manifest-index.json"
    monkeypatch.setenv("MANIFEST_INDEX_FILE", "")
    assert default_index_file("http://127.0.0.1:8042").parent == tmp_path / "cache" / "dicom-annotate" / "manifest-index"


def test_client_side_matching_follows_orthanc_find_rules():
    study = mq._Study("st", "1.2", "20240301", "SYN.7-01")
    series = mq._Series("se", "st", "1.2.3", "DX", 1, ("i",))
    assert parse_filters().matches(study, series)
    assert parse_filters(modalities=["DX", "CR"], patient_id="SYN.7-*").matches(study, series)
    assert not parse_filters(patient_id="SYNx7-*").matches(study, series)      # '.' is literal
    assert not parse_filters(patient_id="syn.7-*").matches(study, series)      # case-sensitive
    assert parse_filters(patient_id="SYN.7-0?").matches(study, series)
    assert parse_filters(study_date_from="2024-03-01", study_date_to="20240301").matches(study, series)
    assert not parse_filters(study_date_to="20240229").matches(study, series)
    undated = mq._Study("st", "1.2", None, "P")
    assert not parse_filters(study_date_from="19000101").matches(undated, series)
    assert not parse_filters(series_uids=["1.2.4"]).matches(study, series)
    assert not parse_filters(study_uids=["1.3"]).matches(study, series)
    assert not parse_filters().matches(None, series)  # a series whose study is unknown


def test_filter_error_pickles_with_its_flag():
    import pickle

    with pytest.raises(FilterError) as info:
        parse_filters(study_date_from="2024-13-01")
    again = pickle.loads(pickle.dumps(info.value))
    assert (type(again), str(again), again.flag) == (FilterError, str(info.value), "--study-date-from")
