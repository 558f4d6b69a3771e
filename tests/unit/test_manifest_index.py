"""The manifest index's file (labeling/manifest/index.py) and what it keeps for ``--level series``
(labeling/manifest/series.py): ordering tags survive a save/load, file tags go when an instance is
read again. The replay against a real Orthanc is tested in tests/integration/test_manifest*.py."""

from __future__ import annotations

import json

from labeling.dicom.series import SliceInfo
from labeling.manifest.index import INDEX_VERSION, ServerIndex, load_index, save_index
from labeling.manifest.series import slice_tags

URL = "http://127.0.0.1:8042"
POSITION, ORIENTATION = "-80\\-80\\12.5", "1\\0\\0\\0\\1\\0"


def _instance(instance_id: str, **tags) -> dict:
    main = {"SOPInstanceUID": f"1.2.3.{instance_id}", "InstanceNumber": "7", "ImagePositionPatient": POSITION,
            "ImageOrientationPatient": ORIENTATION, "InstanceCreationDate": "20260101", **tags}
    return {"ID": instance_id, "ParentSeries": "s1", "MainDicomTags": main}


def _index() -> ServerIndex:
    index = ServerIndex(url=URL, last_change=5)
    index.add("Study", {"ID": "st1", "ParentPatient": "p1", "MainDicomTags": {"StudyInstanceUID": "1.2"},
                        "PatientMainDicomTags": {"PatientID": "P"}})
    index.add("Series", {"ID": "s1", "ParentStudy": "st1", "MainDicomTags": {"Modality": "CT", "SeriesNumber": "2"}})
    index.add("Instance", _instance("i1"))
    index.add("Instance", _instance("i2", ImagePositionPatient="", NumberOfFrames="3"))
    return index


def test_ordering_tags_survive_a_save_and_load(tmp_path):
    index = _index()
    index.keep_file_tags("i1", {"Rows": 512, "Columns": 512, "PixelSpacing": [0.7, 0.7]})
    path = tmp_path / "index.json"
    save_index(index, path)
    assert index.changed is False  # saved: the next build writes only if something changes
    loaded = load_index(path, URL)
    assert loaded is not None and loaded.how == "incremental"
    for instance_id in ("i1", "i2"):
        assert SliceInfo.from_tags(instance_id, loaded.instances[instance_id].tags) == \
            SliceInfo.from_tags(instance_id, index.instances[instance_id].tags)
    assert loaded.instances["i1"].tags == {"SOPInstanceUID": "1.2.3.i1", "InstanceNumber": 7,
                                           "ImagePositionPatient": POSITION, "ImageOrientationPatient": ORIENTATION}
    assert "ImagePositionPatient" not in loaded.instances["i2"].tags  # empty: absent, never zero
    assert loaded.instances["i2"].tags["NumberOfFrames"] == 3
    assert loaded.cached_file_tags("i1") == {"Rows": 512, "Columns": 512, "PixelSpacing": [0.7, 0.7]}
    assert loaded.cached_file_tags("i2") is None


def test_an_instance_read_again_or_removed_loses_its_file_tags():
    index = _index()
    index.keep_file_tags("i1", {"Rows": 512})
    index.keep_file_tags("i2", {"Rows": 64})
    index.add("Instance", _instance("i1", ImagePositionPatient="-80\\-80\\99"))  # a change named it
    assert index.cached_file_tags("i1") is None and index.instances["i1"].tags["ImagePositionPatient"].endswith("99")
    index.remove("Series", "s1")
    assert index.cached_file_tags("i2") is None and index.file_tags == {}
    index.keep_file_tags("gone", {"Rows": 1})  # not in the index: nothing to keep it for
    assert index.file_tags == {}


def test_an_index_of_the_previous_version_is_ignored(tmp_path):
    path = tmp_path / "index.json"
    data = _index().to_json()
    data["version"] = INDEX_VERSION - 1
    path.write_text(json.dumps(data))
    assert load_index(path, URL) is None  # a full listing instead


def test_slice_tags_keep_what_ordering_reads_and_nothing_else():
    frames = [{"PlanePositionSequence": [{"ImagePositionPatient": [0, 0, float(z)]}],
               "FrameContentSequence": [{"FrameAcquisitionNumber": z, "Junk": "x" * 100}]} for z in range(5)]
    full = {
        "SOPInstanceUID": "1.2.3", "InstanceNumber": "1", "NumberOfFrames": "5", "Rows": 64, "Columns": 48,
        "PatientName": "Doe^Jane", "PixelData": None,
        "SharedFunctionalGroupsSequence": [{
            "PlaneOrientationSequence": [{"ImageOrientationPatient": [1, 0, 0, 0, 1, 0]}],
            "PixelMeasuresSequence": [{"PixelSpacing": [0.5, 0.6], "SliceThickness": 1}],
            "CTImageFrameTypeSequence": [{"FrameType": ["ORIGINAL"]}],
        }],
        "PerFrameFunctionalGroupsSequence": frames,
    }
    kept = slice_tags(full)
    assert SliceInfo.from_tags("mf", kept) == SliceInfo.from_tags("mf", full)
    assert SliceInfo.from_tags("mf", kept).frame_positions == tuple((0.0, 0.0, float(z)) for z in range(5))
    assert "PatientName" not in kept and "PixelData" not in kept
    assert kept["SharedFunctionalGroupsSequence"] == [{
        "PlaneOrientationSequence": [{"ImageOrientationPatient": [1, 0, 0, 0, 1, 0]}],
        "PixelMeasuresSequence": [{"PixelSpacing": [0.5, 0.6]}]}]
    assert kept["PerFrameFunctionalGroupsSequence"] == [
        {"PlanePositionSequence": [{"ImagePositionPatient": [0, 0, float(z)]}]} for z in range(5)]

    single = {"SOPInstanceUID": "1.2.4", "Rows": 512, "Columns": 512, "PixelSpacing": "0.7\\0.7",
              "ImagePositionPatient": POSITION, "ImageOrientationPatient": ORIENTATION, "StudyDate": "20260101"}
    assert slice_tags(single) == {k: v for k, v in single.items() if k != "StudyDate"}
