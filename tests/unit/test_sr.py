"""labeling.dicom.sr: TID 1500 SR of an answer in the label shape, written and read back through a Part-10 file."""

from __future__ import annotations

import io

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from labeling.gt.output_manifest import read_output_manifest
from labeling.dicom.sr import (
    CODING_SCHEME,
    Observer,
    SRError,
    build_annotation_sr,
    label_code,
    read_annotation_sr,
    roi_graphic,
    shape_from_graphic,
    sr_bytes,
    store_sr,
)

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
MULTIFRAME_SC = "1.2.840.10008.5.1.4.1.1.7.3"  # Multi-frame Grayscale Word Secondary Capture


def _source(*, frames: int = 1, rows: int = 128, columns: int = 96, full: bool = True) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MULTIFRAME_SC if frames > 1 else SECONDARY_CAPTURE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID = "ANON-1"
    if full:
        ds.PatientName = "Doe^Jane"
        ds.PatientBirthDate, ds.PatientSex = "19700101", "F"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", "A1"
        ds.ReferringPhysicianName = ""
    ds.Modality = "OT"
    ds.Rows, ds.Columns = rows, columns
    if frames > 1:
        ds.NumberOfFrames = frames
    return ds


ANSWER = {
    "labels": [{"name": "Opacity", "present": True, "confidence": 0.93},
               {"name": "Device", "present": False, "confidence": 0.88},
               {"name": "Pleural effusion \\ left", "present": True}],
    "rois": [{"label": "Opacity", "shape": "rectangle", "points": [[30.25, 40.0], [10.0, 20.5]], "confidence": 0.67},
             {"label": "Device", "shape": "polygon", "points": [[1, 1], [5, 1], [3.3, 4.7], [0.5, 3]]},
             {"label": "Pleural effusion \\ left", "shape": "ellipse", "points": [[50, 60], [40, 30]]},
             {"label": "Opacity", "shape": "ellipse", "points": [[10, 10], [30, 14]], "confidence": 0.5},
             {"label": "Device", "shape": "point", "points": [[8.25, 9.75]]}],
    "image": {"rows": 128, "columns": 96, "frame": 0},
}
OBSERVERS = [Observer.person("Smith^Ann", login="worker-1"), Observer.person("reviewer-b"),
             Observer.device("densenet121-chest", "2026.1")]


def _reread(sr: Dataset) -> Dataset:
    return pydicom.dcmread(io.BytesIO(sr_bytes(sr)))


def test_every_shape_label_and_confidence_round_trips_through_a_part10_file():
    source = _source()
    ds = _reread(build_annotation_sr(source, ANSWER, OBSERVERS))
    back = read_annotation_sr(ds, source)
    assert back["labels"] == ANSWER["labels"]
    assert back["rois"] == [{**r, "points": [[float(x), float(y)] for x, y in r["points"]]} for r in ANSWER["rois"]]
    assert back["image"] == ANSWER["image"]
    assert back["observers"][:2] == [{"kind": "person", "name": "Smith^Ann", "login": "worker-1"},
                                     {"kind": "person", "name": "reviewer-b"}]
    device = back["observers"][2]
    assert device["kind"] == "device" and device["name"] == "densenet121-chest"
    assert device["model_name"] == "densenet121-chest 2026.1" and device["uid"] == OBSERVERS[2].device_uid
    assert back["references"] == [{"sop_class_uid": SECONDARY_CAPTURE, "sop_instance_uid": source.SOPInstanceUID}]
    assert back["skipped"] == []


def test_the_document_is_a_tid1500_comprehensive_3d_sr_in_the_source_study():
    source = _source()
    sr = build_annotation_sr(source, ANSWER, OBSERVERS, series_number=77, instance_number=3,
                             description="Consolidated labels")
    ds = _reread(sr)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR Storage
    assert ds.StudyInstanceUID == source.StudyInstanceUID and ds.PatientID == "ANON-1"
    assert ds.SeriesInstanceUID != source.SeriesInstanceUID and ds.Modality == "SR"
    assert (ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription) == (77, 3, "Consolidated labels")
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert ds.ConceptNameCodeSequence[0].CodeValue == "126000"  # Imaging Measurement Report
    evidence = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert ds.CompletionFlag == "COMPLETE"

    parsed = hd.sr.srread(io.BytesIO(sr_bytes(sr)))
    report = parsed.content
    image_groups = report.get_image_measurement_groups()
    roi_groups = report.get_planar_roi_measurement_groups()
    assert [g.tracking_identifier for g in image_groups] == [e["name"] for e in ANSWER["labels"]]
    assert [g.tracking_identifier for g in roi_groups] == [r["label"] for r in ANSWER["rois"]]
    assert len({g.tracking_uid for g in image_groups + roi_groups}) == 8
    opacity = image_groups[0]
    assert opacity.finding_type == label_code("Opacity")
    [evaluation] = opacity.get_qualitative_evaluations()
    assert evaluation.name == label_code("Opacity") and evaluation.value == codes.SCT.Present
    assert image_groups[1].get_qualitative_evaluations()[0].value == codes.SCT.Absent
    [certainty] = opacity.get_measurements(name=codes.DCM.CertaintyOfFinding)
    assert certainty.value == pytest.approx(93.0) and certainty.unit == codes.UCUM.Percent
    assert [g.roi.graphic_type.value for g in roi_groups] == ["POLYLINE", "POLYLINE", "ELLIPSE", "ELLIPSE", "POINT"]
    assert roi_groups[0].roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == \
        source.SOPInstanceUID
    texts = {item.name: getattr(item, "TextValue", None) for item in opacity[0].ContentSequence}
    # TID 4019 Algorithm Identification: the device observer's model
    assert texts[codes.DCM.AlgorithmName] == "densenet121-chest" and texts[codes.DCM.AlgorithmVersion] == "2026.1"


def test_scoord_graphic_data_follows_ps3_3_c18_6_1_2():
    kind, data = roi_graphic("rectangle", [[30, 40], [10, 20]])
    assert kind == "POLYLINE" and data.tolist() == [[30, 40], [10, 40], [10, 20], [30, 20], [30, 40]]
    kind, data = roi_graphic("polygon", [[1, 1], [5, 1], [3, 4]])
    assert kind == "POLYLINE" and data.tolist() == [[1, 1], [5, 1], [3, 4], [1, 1]]  # closed: first = last
    kind, data = roi_graphic("ellipse", [[10, 10], [30, 14]])  # wide: major axis horizontal, first
    assert kind == "ELLIPSE" and data.tolist() == [[10, 12], [30, 12], [20, 10], [20, 14]]
    kind, data = roi_graphic("ellipse", [[0, 0], [4, 10]])  # tall: major axis vertical, first
    assert data.tolist() == [[2, 0], [2, 10], [0, 5], [4, 5]]
    kind, data = roi_graphic("point", [[3, 4]])
    assert kind == "POINT" and data.tolist() == [[3, 4]]


def test_reading_others_scoords():
    assert shape_from_graphic("CIRCLE", np.array([[10, 10], [13, 14]])) == ("ellipse", [[5.0, 5.0], [15.0, 15.0]])
    # a rotated ellipse (45 degrees): its bounding box
    s = 5 / np.sqrt(2)
    shape, points = shape_from_graphic("ELLIPSE", np.array([[10 - s, 10 - s], [10 + s, 10 + s],
                                                            [10 - 1, 10 + 1], [10 + 1, 10 - 1]]))
    assert shape == "ellipse" and np.allclose(points, [[10 - np.hypot(s, 1), 10 - np.hypot(s, 1)],
                                                       [10 + np.hypot(s, 1), 10 + np.hypot(s, 1)]], atol=1e-5)
    assert shape_from_graphic("POLYLINE", np.array([[0, 0], [5, 5], [9, 1]])) is None  # open polyline
    assert shape_from_graphic("MULTIPOINT", np.array([[0, 0], [5, 5]])) is None
    assert shape_from_graphic("POLYGON", np.array([[0, 0], [5, 0], [2, 3], [0, 0]])) == (
        "polygon", [[0.0, 0.0], [5.0, 0.0], [2.0, 3.0]])
    # an axis-aligned 4-vertex polygon is the same region as a rectangle, and reads back as one
    assert shape_from_graphic(*roi_graphic("polygon", [[0, 0], [4, 0], [4, 2], [0, 2]])) == (
        "rectangle", [[0.0, 0.0], [4.0, 2.0]])


def test_float32_graphic_data_reads_back_as_the_decimal_written():
    answer = {"rois": [{"label": "A", "shape": "polygon", "points": [[12.34, 56.78], [100.1, 7.7], [0.3, 99.9]]}]}
    back = read_annotation_sr(_reread(build_annotation_sr(_source(columns=128), answer, OBSERVERS[:1])))
    assert back["rois"][0]["points"] == [[12.34, 56.78], [100.1, 7.7], [0.3, 99.9]]
    assert back["labels"] == []


def test_multiframe_source_references_the_frame():
    source = _source(frames=4)
    answer = {**ANSWER, "image": {"rows": 128, "columns": 96, "frame": 2}}
    ds = _reread(build_annotation_sr(source, answer, OBSERVERS))
    back = read_annotation_sr(ds, source)
    assert back["image"] == {"rows": 128, "columns": 96, "frame": 2}
    group = hd.sr.Comprehensive3DSR.from_dataset(ds).content.get_planar_roi_measurement_groups()[0]
    assert group.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedFrameNumber == 3  # 1-based


def test_a_deidentified_source_without_type2_attributes_still_gives_an_sr():
    source = _source(full=False)
    ds = _reread(build_annotation_sr(source, ANSWER, OBSERVERS))
    assert ds.PatientName == "" and ds.StudyDate == "" and ds.PatientID == "ANON-1"
    assert "PatientBirthDate" not in source  # the caller's dataset is left alone


def test_non_ascii_names_survive():
    answer = {"labels": [{"name": "Épanchement", "present": True}]}
    ds = _reread(build_annotation_sr(_source(), answer, [Observer.person("Müller^Jürgen")]))
    back = read_annotation_sr(ds)
    assert back["labels"] == [{"name": "Épanchement", "present": True}]
    assert back["observers"] == [{"kind": "person", "name": "Müller^Jürgen"}]


def test_label_codes_are_private_deterministic_and_valid_sh():
    assert label_code("Opacity") == hd.sr.CodedConcept("Opacity", CODING_SCHEME, "Opacity")
    long = label_code("Pleural effusion \\ left")
    assert long.value.startswith("L") and len(long.value) == 16 and long.meaning == "Pleural effusion / left"
    assert long == label_code("Pleural effusion \\ left") and long != label_code("Pleural effusion / left")


def test_device_uid_is_one_per_model_version():
    assert Observer.device("m", "1").device_uid == Observer.device("m", "1").device_uid
    assert Observer.device("m", "1").device_uid != Observer.device("m", "2").device_uid


def test_a_consolidated_output_manifest_record_becomes_an_sr():
    line = {"source": "orthanc-id", "labels": ["Opacity"], "job": {
        "labels": [{"name": "Opacity", "present": True, "confidence": 0.75}],
        "rois": [{"label": "Opacity", "shape": "rectangle", "points": [[1, 2], [3, 4]], "confidence": 1.0}],
        "image": {"rows": 128, "columns": 96, "frame": 0}, "annotators": 3,
        "agreement": {"labels": 0.5, "rois_mean_iou": 0.8}},
        "job-metadata": {"type": "groundtruth/custom", "job-name": "job"}}
    [record] = read_output_manifest([line])
    source = _source()
    back = read_annotation_sr(_reread(build_annotation_sr(source, record.answer(), OBSERVERS[:2])), source)
    assert {k: back[k] for k in ("labels", "rois", "image")} == record.answer()


@pytest.mark.parametrize("answer, observers, message", [
    ({"labels": [{"name": "A", "present": "yes"}]}, OBSERVERS, "labels[0].present"),
    ({"rois": [{"label": "A", "shape": "polygon", "points": [[0, 0], [1, 1]]}]}, OBSERVERS, "rois[0].points"),
    ({"labels": [{"name": "A", "present": True, "confidence": 1.2}]}, OBSERVERS, "labels[0].confidence"),
    ({"labels": [{"name": "A", "present": True}], "image": {"rows": 5, "columns": 96}}, OBSERVERS,
     "image.rows: 5 but the image has 128"),
    ({"labels": [{"name": "A", "present": True}], "image": {"rows": 128, "columns": 96, "frame": 1}}, OBSERVERS,
     "image.frame: frame 1 is outside"),
    ({"rois": [{"label": "A", "shape": "point", "points": [[96.5, 3]]}]}, OBSERVERS,
     "rois[0].points: point 0 .96.5, 3. lies outside the 96x128 image"),
    ({"labels": []}, OBSERVERS, "nothing to report"),
    ({"labels": [{"name": "A", "present": True}]}, [], "at least one"),
    ({"labels": [{"name": "A", "present": True}]}, [Observer("robot", "x")], "kind 'robot'"),
])
def test_bad_answers_are_refused_with_the_part_named(answer, observers, message):
    with pytest.raises(SRError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build_annotation_sr(_source(), answer, observers)


def test_a_source_without_uids_is_refused():
    source = _source()
    del source.StudyInstanceUID
    with pytest.raises(SRError, match="StudyInstanceUID"):
        build_annotation_sr(source, ANSWER, OBSERVERS)


def test_reading_a_non_sr_is_an_error():
    with pytest.raises(SRError, match="not a TID 1500"):
        read_annotation_sr(_source())


def test_store_sr_posts_the_part10_bytes_and_returns_the_orthanc_id():
    sr = build_annotation_sr(_source(), ANSWER, OBSERVERS)

    class Recorder:
        def upload(self, data):
            self.data = data
            return type("Result", (), {"instance_id": "abc-123"})()

    client = Recorder()
    assert store_sr(client, sr) == "abc-123"
    stored = pydicom.dcmread(io.BytesIO(client.data))
    assert stored.SOPInstanceUID == sr.SOPInstanceUID and client.data[128:132] == b"DICM"


def test_an_uncertain_label_is_not_stated():
    # labeling/contracts/answer.py: {"name", "uncertain": true} has no "present"; the SR states no finding for it.
    answer = {"labels": [{"name": "Opacity", "uncertain": True}, {"name": "Device", "present": False}],
              "rois": [{"label": "Device", "shape": "point", "points": [[8.25, 9.75]]}],
              "image": {"rows": 128, "columns": 96, "frame": 0}}
    source = _source()
    back = read_annotation_sr(_reread(build_annotation_sr(source, answer, OBSERVERS[:1])), source)
    assert back["labels"] == [{"name": "Device", "present": False}]
    assert [r["label"] for r in back["rois"]] == ["Device"]
    with pytest.raises(SRError, match="nothing to report"):
        build_annotation_sr(source, {"labels": [{"name": "Opacity", "uncertain": True}]}, OBSERVERS[:1])
