"""DICOM files and Orthanc look-ups shared by the integration tests."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from labeling.orthanc.client import OrthancClient

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


@dataclass
class Series:
    folder: Path
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uids: list[str]
    files: list[Path]


def dicom_bytes(*, patient_id: str, study_uid: str, series_uid: str, sop_uid: Optional[str] = None,
                size: int = 64, number: int = 1) -> bytes:
    """A small, valid Secondary Capture instance (16-bit MONOCHROME2) with the given UIDs."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = patient_id
    ds.PatientName = "Test^Upload"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "OT"
    ds.InstanceNumber = number
    ds.Rows = ds.Columns = size
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = np.random.default_rng(number).integers(0, 4096, (size, size), dtype=np.uint16).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def sop_uids_in_orthanc(client: OrthancClient, series_uid: str) -> set[str]:
    """SOP Instance UIDs Orthanc holds for one series (one /tools/find with Expand)."""
    found = client.find("Instance", {"SeriesInstanceUID": series_uid}, expand=True)
    return {item["MainDicomTags"]["SOPInstanceUID"] for item in found}
