"""labeling.dicom.sr against the real local Orthanc: an SR of an uploaded image is stored, read back, parsed."""

from __future__ import annotations

import io

import highdicom as hd
import pydicom
from pydicom.uid import generate_uid

from labeling.dicom.sr import Observer, build_annotation_sr, read_annotation_sr, store_sr
from tests.integration.dicom_files import dicom_bytes

ANSWER = {
    "labels": [{"name": "Opacity", "present": True, "confidence": 0.8},
               {"name": "Device", "present": False, "confidence": 0.6}],
    "rois": [{"label": "Opacity", "shape": "rectangle", "points": [[4.5, 6.5], [20.0, 30.0]], "confidence": 0.67},
             {"label": "Opacity", "shape": "ellipse", "points": [[30, 30], [50, 40]]},
             {"label": "Device", "shape": "polygon", "points": [[1, 1], [9, 2], [5, 8]]},
             {"label": "Device", "shape": "point", "points": [[12.25, 13.75]]}],
    "image": {"rows": 64, "columns": 64, "frame": 0},
}


def test_sr_is_stored_in_the_source_study_and_reads_back(client):
    study_uid = generate_uid()
    data = dicom_bytes(patient_id=f"IT-SR-{study_uid[-8:]}", study_uid=study_uid, series_uid=generate_uid(), size=64)
    source_upload = client.upload(data)
    source = pydicom.dcmread(io.BytesIO(client.instance_file(source_upload.instance_id)), stop_before_pixels=True)

    sr = build_annotation_sr(source, ANSWER, [Observer.person("Annotator^One", login="a1"),
                                              Observer.person("Reviewer^Two", login="r2")],
                             description="Consolidated annotations")
    sr_id = store_sr(client, sr)
    assert sr_id != source_upload.instance_id
    assert store_sr(client, sr) == sr_id  # the same SOP Instance UID is the same Orthanc instance

    tags = client.instance_tags(sr_id)
    assert tags["Modality"] == "SR" and tags["StudyInstanceUID"] == study_uid
    assert tags["SOPInstanceUID"] == sr.SOPInstanceUID
    series = client.request("GET", f"/instances/{sr_id}/series").json()
    assert series["ParentStudy"] == source_upload.parent_study  # beside the image, in its study
    assert series["MainDicomTags"]["SeriesDescription"] == "Consolidated annotations"

    stored = client.instance_file(sr_id)
    parsed = hd.sr.srread(io.BytesIO(stored))
    assert isinstance(parsed, hd.sr.Comprehensive3DSR)
    groups = parsed.content.get_planar_roi_measurement_groups(
        referenced_sop_instance_uid=source.SOPInstanceUID)
    assert [g.tracking_identifier for g in groups] == ["Opacity", "Opacity", "Device", "Device"]

    back = read_annotation_sr(pydicom.dcmread(io.BytesIO(stored)), source)
    assert back["labels"] == ANSWER["labels"]
    assert back["rois"] == [{**r, "points": [[float(x), float(y)] for x, y in r["points"]]} for r in ANSWER["rois"]]
    assert back["image"] == ANSWER["image"]
    assert [o["login"] for o in back["observers"]] == ["a1", "r2"]
    assert back["references"] == [{"sop_class_uid": source.SOPClassUID, "sop_instance_uid": source.SOPInstanceUID}]
