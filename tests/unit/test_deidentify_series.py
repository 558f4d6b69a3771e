"""De-identifying a synthetic CT series and its Enhanced CT instance keeps what series viewing needs:
one study/series/frame-of-reference UID per series (new ones), the geometry, the per-frame groups."""

from __future__ import annotations

import io

import pydicom
import pytest

from labeling.dicom.deidentify import deidentify
from labeling.dicom.series import SliceInfo, dataset_tags, multiframe_task, order_series
from devkit.synth_series import generate_series_dataset

SALT = b"test-salt-series"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp("deid") / "ct"
    generate_series_dataset(out, series=1, slices=10, size=64, seed=8, prevalence=1.0, progress=False)
    return {p.stem: p.read_bytes() for p in out.rglob("*.dcm")}


def test_series_uids_stay_consistent_and_geometry_survives(files):
    originals = {sop: pydicom.dcmread(io.BytesIO(data)) for sop, data in files.items()}
    slices = {sop: ds for sop, ds in originals.items() if "NumberOfFrames" not in ds}
    cleaned = {sop: pydicom.dcmread(io.BytesIO(deidentify(files[sop], salt=SALT))) for sop in slices}
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        values = {str(ds[key].value) for ds in cleaned.values()}
        assert len(values) == 1, key
        assert values != {str(next(iter(slices.values()))[key].value)}  # replaced, not kept
    assert all(not ds.PatientName and not ds.StudyDate for ds in cleaned.values())
    before = order_series("s", [SliceInfo.from_tags(sop, dataset_tags(ds)) for sop, ds in slices.items()])
    after = order_series("s", [SliceInfo.from_tags(sop, dataset_tags(ds)) for sop, ds in cleaned.items()])
    assert after.instances == before.instances and after.geometry == before.geometry and after.flags == ()


def test_multiframe_per_frame_positions_survive(files):
    mf_sop = next(sop for sop, data in files.items() if "NumberOfFrames" in pydicom.dcmread(io.BytesIO(data),
                                                                                                 stop_before_pixels=True))
    ds = pydicom.dcmread(io.BytesIO(deidentify(files[mf_sop], salt=SALT)))
    original = pydicom.dcmread(io.BytesIO(files[mf_sop]))
    assert ds.PixelData == original.PixelData and int(ds.NumberOfFrames) == 10
    task = multiframe_task(SliceInfo.from_tags("mf", dataset_tags(ds)))
    assert task.flags == () and task.geometry["spacing"] == 3.0
    # the dimension organization UID is a UID too: replaced consistently in both places
    assert ds.DimensionIndexSequence[0].DimensionOrganizationUID == \
        ds.DimensionOrganizationSequence[0].DimensionOrganizationUID != \
        original.DimensionOrganizationSequence[0].DimensionOrganizationUID
