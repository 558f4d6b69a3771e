"""training.imaging + training.dataset: preprocessing rules, labels from the output manifest,
the disk cache, and the split by patient."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

from labeling.gt.output_manifest import output_line, write_output_manifest
from training.dataset import (
    DatasetError,
    DirectorySource,
    ImageCache,
    instance_id_of,
    labeled_items,
    read_labels,
    split_by_patient,
)
from training.imaging import ImageError, Preprocessing, patient_key, preprocess, read_dicom

SC = "1.2.840.10008.5.1.4.1.1.7"
NAMES = ["Opacity", "Device", "Effusion"]


def make_ds(pixels: np.ndarray, *, photometric: str = "MONOCHROME2", window: tuple[float, float] | None = None,
            patient: str = "P1") -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SC
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SC
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID = patient
    ds.Modality = "OT"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    if window:
        ds.WindowCenter, ds.WindowWidth = str(window[0]), str(window[1])
    ds.PixelData = pixels.astype("<u2").tobytes()
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def ramp(rows: int = 32, cols: int = 32) -> np.ndarray:
    return np.tile(np.linspace(0, 4000, cols), (rows, 1)).astype(np.uint16)


# --- imaging -----------------------------------------------------------------------------------


def test_window_from_file_clips_and_scales():
    ds = make_ds(ramp(), window=(2000, 2000))
    out = preprocess(ds, Preprocessing(size=32))
    assert out.shape == (1, 32, 32) and out.dtype == np.float32
    row = out[0, 0]
    assert row[0] == 0.0 and row[-1] == 1.0           # outside the window: clipped
    assert 0.4 < row[16] < 0.6                          # centre of the ramp ≈ window centre
    minmax = preprocess(ds, Preprocessing(size=32, window="minmax"))
    assert minmax[0, 0, 1] > 0.0 and not np.array_equal(minmax, out)  # the window changed the picture


def test_monochrome1_is_inverted():
    px = ramp()
    m2 = preprocess(make_ds(px), Preprocessing(size=32))
    m1 = preprocess(make_ds(px, photometric="MONOCHROME1"), Preprocessing(size=32))
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)


def test_non_square_is_padded_not_stretched():
    px = np.full((20, 40), 3000, dtype=np.uint16)
    px[:, :20] = 0
    out = preprocess(make_ds(px, window=(1500, 3000)), Preprocessing(size=40))[0]
    assert out.shape == (40, 40)
    assert out[:10].max() == 0.0 and out[-10:].max() == 0.0       # padding rows above and below
    assert out[20, 30] == pytest.approx(1.0, abs=1e-3) and out[20, 5] == 0.0


def test_compressed_transfer_syntax_decodes_like_the_uncompressed_file():
    rng = np.random.default_rng(0)
    px = rng.integers(0, 4096, (32, 32)).astype(np.uint16)
    plain = make_ds(px, window=(2048, 4096))
    rle = make_ds(px, window=(2048, 4096))
    rle.compress(RLELossless)
    a = preprocess(read_dicom(to_bytes(plain)), Preprocessing(size=32))
    b = preprocess(read_dicom(to_bytes(rle)), Preprocessing(size=32))
    assert read_dicom(to_bytes(rle)).file_meta.TransferSyntaxUID == RLELossless
    np.testing.assert_array_equal(a, b)


def test_bad_input_names_the_object():
    with pytest.raises(ImageError, match="upload.dcm: not a readable DICOM"):
        read_dicom(b"not dicom at all", name="upload.dcm")
    ds = make_ds(ramp())
    del ds.PixelData
    with pytest.raises(ImageError, match="no pixel data"):
        preprocess(ds, Preprocessing(size=32), name="sr")


def test_patient_key_hides_the_id_and_groups_by_patient():
    a, b = make_ds(ramp(), patient="PAT-1"), make_ds(ramp(), patient="PAT-1")
    c = make_ds(ramp(), patient="PAT-2")
    assert patient_key(a) == patient_key(b) != patient_key(c)
    assert "PAT" not in patient_key(a)


def test_preprocessing_key_changes_with_parameters():
    assert Preprocessing(size=64).key() != Preprocessing(size=128).key()
    assert Preprocessing(size=64).key() == Preprocessing.from_dict(Preprocessing(size=64).to_dict()).key()
    with pytest.raises(ValueError, match="image size"):
        Preprocessing(size=4)


# --- labels from the output manifest (the one reader) --------------------------------------------


def consolidated(present: dict[str, bool], conf: float = 0.9) -> dict:
    return {"labels": [{"name": n, "present": p, "confidence": conf} for n, p in present.items()],
            "rois": [], "image": {"rows": 32, "columns": 32, "frame": 0}}


def line(source: str, present: dict[str, bool], conf: float = 0.9) -> dict:
    base = {"source": source, "labels": NAMES, "task_type": "classification", "schema": "chest-xray"}
    return output_line(base, "cxr", consolidated(present, conf), "job-1")


def test_read_labels_uses_the_output_manifest_reader(tmp_path):
    path = tmp_path / "out.manifest"
    write_output_manifest(path, [
        line("a" * 8, {"Opacity": True, "Device": False, "Effusion": True}, 0.8),
        line("b" * 8, {"Opacity": False, "Device": True}, 0.6),            # Effusion unknown
    ])
    names, items = read_labels(path)
    assert names == NAMES
    np.testing.assert_array_equal(items[0].target, [1, 0, 1])
    np.testing.assert_array_equal(items[1].weight, [1, 1, 0])             # unknown → weight 0
    _, weighted = read_labels(path, confidence_weighting=True)
    np.testing.assert_allclose(weighted[0].weight, [0.8, 0.8, 0.8])
    np.testing.assert_allclose(weighted[1].weight, [0.6, 0.6, 0.0])


def test_bad_manifest_line_is_reported_with_its_line_number(tmp_path):
    from labeling.gt.output_manifest import OutputManifestError

    path = tmp_path / "out.manifest"
    path.write_text(json.dumps(line("a" * 8, {"Opacity": True})) + "\n{not json\n")
    with pytest.raises(OutputManifestError, match=":2:"):
        read_labels(path)


def test_duplicate_image_and_unsafe_ids_are_refused(tmp_path):
    from labeling.gt.output_manifest import read_output_manifest

    recs = read_output_manifest([line("a" * 8, {"Opacity": True}), line("a" * 8, {"Opacity": False})])
    with pytest.raises(DatasetError, match="appears twice"):
        labeled_items(recs)
    bad = read_output_manifest([line("../../etc/passwd", {"Opacity": True})])
    with pytest.raises(DatasetError, match="no usable image id"):
        labeled_items(bad)


def test_source_ref_names_the_staged_file():
    class Rec:
        source, source_ref, line = None, "s3://bucket/job/0a1b2c3d-00000000-11111111-22222222-33333333.dcm", {}

    assert instance_id_of(Rec()) == "0a1b2c3d-00000000-11111111-22222222-33333333"


# --- cache -------------------------------------------------------------------------------------


class CountingSource(DirectorySource):
    def __init__(self, root):
        super().__init__(root)
        self.fetches = 0

    def fetch(self, instance_id):
        self.fetches += 1
        return super().fetch(instance_id)


def test_cache_fetches_each_image_once_per_preprocessing(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        (images / f"img{i}.dcm").write_bytes(to_bytes(make_ds(ramp(), patient=f"P{i}")))
    source = CountingSource(images)
    cache = ImageCache(tmp_path / "cache", Preprocessing(size=16))
    first = cache.get_many(["img0", "img1", "img2"], source, workers=2)
    again = cache.get_many(["img0", "img1", "img2"], source, workers=2)
    assert source.fetches == 3
    assert [c.path for c in first] == [c.path for c in again]
    assert np.load(first[0].path).shape == (1, 16, 16)
    ImageCache(tmp_path / "cache", Preprocessing(size=24)).get("img0", source)
    assert source.fetches == 4                       # other parameters: another entry
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    with pytest.raises(DatasetError, match="no file missing.dcm"):
        cache.get("missing", source)


# --- split by patient --------------------------------------------------------------------------


def test_split_never_puts_a_patient_on_both_sides_and_stratifies():
    rng = np.random.default_rng(3)
    patients = [f"p{i // 3}" for i in range(90)]                  # 30 patients x 3 images
    target = (rng.random((90, 3)) < [0.1, 0.35, 0.5]).astype(np.float32)
    weight = np.ones_like(target)
    for seed in range(5):
        tr, va = split_by_patient(patients, target, weight, val_fraction=0.25, seed=seed)
        assert sorted(np.concatenate([tr, va]).tolist()) == list(range(90))
        assert not {patients[i] for i in tr} & {patients[i] for i in va}
        assert 0.15 <= len(va) / 90 <= 0.35
        for j in range(3):                                         # every label on both sides
            assert target[va, j].sum() > 0 and target[tr, j].sum() > 0
    again = split_by_patient(patients, target, weight, val_fraction=0.25, seed=0)
    first = split_by_patient(patients, target, weight, val_fraction=0.25, seed=0)
    assert [a.tolist() for a in again] == [b.tolist() for b in first]


def test_split_needs_two_patients():
    with pytest.raises(DatasetError, match="at least 2 patients"):
        split_by_patient(["p"] * 4, np.zeros((4, 1)), np.ones((4, 1)))
    tr, va = split_by_patient(["p", "q"], np.zeros((2, 1)), np.ones((2, 1)))
    assert len(tr) == 1 and len(va) == 1


def test_split_puts_negatives_of_a_mostly_positive_label_on_both_sides():
    # 16 patients, 14 positive for the one label: stratifying positives alone could leave validation
    # without a negative (its AUROC undefined), which broke the CT demo at prevalence 0.5.
    patients = [f"p{i}" for i in range(16)]
    target = np.array([[1.0]] * 14 + [[0.0]] * 2, dtype=np.float32)
    weight = np.ones_like(target)
    for seed in range(20):
        tr, va = split_by_patient(patients, target, weight, val_fraction=0.25, seed=seed)
        for side in (tr, va):
            assert target[side, 0].sum() > 0 and (1 - target[side, 0]).sum() > 0, (seed, side)


def test_split_ignores_unknown_answers_when_stratifying():
    # weight 0 = no known answer: such an image is neither a positive nor a negative of the label
    patients = [f"p{i}" for i in range(8)]
    target = np.array([[1.0]] * 4 + [[0.0]] * 4, dtype=np.float32)
    weight = np.array([[1.0]] * 2 + [[0.0]] * 2 + [[1.0]] * 2 + [[0.0]] * 2, dtype=np.float32)
    tr, va = split_by_patient(patients, target, weight, val_fraction=0.5, seed=0)
    known = weight[:, 0] > 0
    for side in (tr, va):
        assert (target[side, 0] * known[side]).sum() == 1 and ((1 - target[side, 0]) * known[side]).sum() == 1
