"""PS3.15 Annex E Basic Profile (labeling/dicom/deidentify.py) on pydicom's sample files and a built one."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from labeling.dicom import deidentify as deid

SALT = b"unit-test-salt"


def _read(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def _sample(name: str) -> bytes:
    with open(get_testdata_file(name), "rb") as handle:
        return handle.read()


def _built() -> bytes:
    """An instance with PHI everywhere the profile looks: names, IDs, dates, UIDs, nested, private, overlay."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.7.100"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.SourceApplicationEntityTitle = "HOSPITAL_PACS"
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3.4.5.6.7.100"
    ds.StudyInstanceUID = "1.2.3.4.5.6.7.1"
    ds.SeriesInstanceUID = "1.2.3.4.5.6.7.2"
    ds.FrameOfReferenceUID = "1.2.3.4.5.6.7.3"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "MRN-123456"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.PatientAge = "055Y"
    ds.PatientAddress = "1 Main Street"
    ds.OtherPatientIDs = "OTHER-99"
    ds.AccessionNumber = "ACC-42"
    ds.StudyID = "S-7"
    ds.StudyDate = "20240102"
    ds.StudyTime = "101010"
    ds.SeriesDate = "20240102"
    ds.AcquisitionDateTime = "20240102101010"
    ds.InstitutionName = "General Hospital"
    ds.StationName = "XR-ROOM-3"
    ds.ReferringPhysicianName = "House^Gregory"
    ds.PerformingPhysicianName = "Grey^Meredith"
    ds.OperatorsName = "Tech^Tom"
    ds.StudyDescription = "Chest of Jane Doe"
    ds.ImageComments = "patient Jane Doe, bed 4"
    ds.DeviceSerialNumber = "SN-0001"
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ref.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7.99"
    ds.SourceImageSequence = Sequence([ref])
    ds.add_new(0x00091010, "LO", "private PHI Jane Doe")
    ds.add_new(0x60000010, "US", 8)
    ds.add_new(0x60003000, "OW", b"\x00" * 8)
    ds.Modality = "DX"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    ds.PixelSpacing = [0.1, 0.1]
    ds.BurnedInAnnotation = "NO"
    ds.PixelData = bytes(range(128))
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_phi_is_removed_or_emptied():
    raw = _built()
    out = _read(deid.deidentify(raw, salt=SALT))
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                    "StudyDate", "StudyTime", "ReferringPhysicianName"):
        assert keyword in out and not out[keyword].value, keyword  # Z: present, zero length
    for keyword in ("PatientAge", "PatientAddress", "OtherPatientIDs", "SeriesDate", "AcquisitionDateTime",
                    "InstitutionName", "StationName", "PerformingPhysicianName", "OperatorsName",
                    "StudyDescription", "ImageComments", "DeviceSerialNumber"):
        assert keyword not in out, keyword  # X
    assert "SourceApplicationEntityTitle" not in out.file_meta
    written = deid.deidentify(raw, salt=SALT)
    for phi in (b"Doe", b"Jane", b"MRN-123456", b"19700101", b"ACC-42", b"General Hospital", b"House",
                b"1.2.3.4.5.6.7", b"HOSPITAL_PACS", b"SN-0001"):
        assert phi not in written, phi
    assert out.PatientIdentityRemoved == "YES"
    assert out.DeidentificationMethod == deid.DEIDENTIFICATION_METHOD
    code = out.DeidentificationMethodCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == deid.BASIC_PROFILE_CODE
    assert out.LongitudinalTemporalInformationModified == "REMOVED"


def test_display_attributes_and_pixels_are_kept():
    raw = _built()
    before, after = _read(raw), _read(deid.deidentify(raw, salt=SALT))
    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
                    "SamplesPerPixel", "PhotometricInterpretation", "WindowCenter", "WindowWidth",
                    "RescaleSlope", "RescaleIntercept", "PixelSpacing", "Modality", "BodyPartExamined",
                    "ViewPosition", "SOPClassUID", "BurnedInAnnotation"):
        assert after[keyword].value == before[keyword].value, keyword
    assert after.PixelData == before.PixelData
    assert after.file_meta.TransferSyntaxUID == before.file_meta.TransferSyntaxUID


def test_uids_are_replaced_deterministically_and_consistently():
    raw = _built()
    first, second = _read(deid.deidentify(raw, salt=SALT)), _read(deid.deidentify(raw, salt=SALT))
    other_salt = _read(deid.deidentify(raw, salt=b"another deployment"))
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        value = first[keyword].value
        assert value.startswith("2.25.") and len(value) <= 64 and "1.2.3.4.5.6.7" not in value
        assert value == second[keyword].value
        assert value != other_salt[keyword].value
    assert first.SOPInstanceUID == deid.uid_for("1.2.3.4.5.6.7.100", SALT)
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID
    nested = first.SourceImageSequence[0]
    assert nested.ReferencedSOPInstanceUID == deid.uid_for("1.2.3.4.5.6.7.99", SALT)
    assert nested.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.7"  # a class, not an instance
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    # The whole output is reproducible: same input + salt → same bytes (idempotent staging).
    assert deid.deidentify(raw, salt=SALT) == deid.deidentify(raw, salt=SALT)


def test_private_tags_overlays_and_curves_are_removed():
    out = _read(deid.deidentify(_built(), salt=SALT))
    assert not [e.tag for e in out if e.tag.is_private]
    assert not [e.tag for e in out if 0x6000 <= e.tag.group <= 0x601E]
    ct = _read(deid.deidentify(_sample("CT_small.dcm"), salt=SALT))
    assert any(e.tag.is_private for e in _read(_sample("CT_small.dcm")))  # the sample has some
    assert not [e.tag for e in ct if e.tag.is_private]


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_samples_keep_pixel_bytes_and_lose_names(name):
    raw = _sample(name)
    before, after = _read(raw), _read(deid.deidentify(raw, salt=SALT))
    assert str(before.PatientName)  # the sample names someone
    assert after.PatientName == "" and after.PixelData == before.PixelData
    assert after.pixel_array.shape == before.pixel_array.shape


def test_compressed_pixel_data_is_kept_byte_identical():
    raw = _sample("JPEG2000.dcm")
    before = _read(raw)
    assert before.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.91"
    data = deid.deidentify(raw, salt=SALT)
    after = _read(data)  # readable by pydicom
    assert after.file_meta.TransferSyntaxUID == before.file_meta.TransferSyntaxUID
    assert after.PixelData == before.PixelData  # encapsulated fragments and offset table untouched
    assert (after.Rows, after.Columns, after.NumberOfFrames) == (before.Rows, before.Columns, before.NumberOfFrames)
    assert after.PatientName == "" and "InstanceCreationDate" not in after


def test_dataset_level_function_and_bad_input():
    ds = _read(_built())
    assert deid.deidentify_dataset(ds, salt=SALT) is ds and not ds.PatientName
    with pytest.raises(ValueError, match="salt"):
        deid.deidentify_dataset(_read(_built()), salt=b"")
    with pytest.raises(ValueError, match="not a readable DICOM"):
        deid.deidentify(b"not dicom at all", salt=SALT)


def test_the_profile_table_never_touches_display_attributes():
    from pydicom.datadict import tag_for_keyword

    names = set(deid.identifying_keywords())
    assert not names & deid.DISPLAY_KEYWORDS
    assert all(tag_for_keyword(k) is not None for k in names | deid.DISPLAY_KEYWORDS | deid.KEEP_UIDS)
