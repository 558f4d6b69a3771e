"""The DICOM file of one synthetic image (PS3.3 A.26 DX IOD or A.2 CR IOD, PS3.10 Part-10, Explicit
VR Little Endian) and its ground-truth record (the label shape, written aside)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian)

from labeling import __version__
from devkit.synth_plan import _DETECTOR_WIDTH_MM, _MAGNIFICATION, MANUFACTURER, StudyInfo, SynthParams

def build_dataset(study: StudyInfo, pixels: np.ndarray, params: SynthParams) -> Dataset:
    """The DICOM dataset of one image (PS3.3 A.26 DX IOD, or A.2 CR IOD), file meta included."""
    sop_class = DigitalXRayImageStorageForPresentation if params.modality == "DX" else ComputedRadiographyImageStorage
    ds = Dataset()
    _add_identity(ds, study, params, sop_class)
    _add_image(ds, study, params)
    _add_pixels(ds, pixels, params)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = study.sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # PS3.5 A.2
    return ds


def _add_identity(ds: Dataset, study: StudyInfo, params: SynthParams, sop_class: str) -> None:
    """SOP Common, Patient, Patient Study, General Study and the series modules."""
    patient = study.patient
    is_dx = params.modality == "DX"
    study_date = study.date.strftime("%Y%m%d")
    study_time = study.time.strftime("%H%M%S")
    age_years = (study.date - patient.birth_date).days // 365
    # SOP Common (C.12.1)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = study.sop_uid
    ds.InstanceCreationDate = study_date  # no wall clock: files are byte-identical on reruns
    ds.InstanceCreationTime = study_time
    # Patient (C.7.1.1), Patient Study (C.7.2.2)
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date.strftime("%Y%m%d")
    ds.PatientSex = patient.sex
    ds.PatientAge = f"{age_years:03d}Y"
    # General Study (C.7.2.1)
    ds.StudyInstanceUID = study.study_uid
    ds.StudyDate = study_date
    ds.StudyTime = study_time
    ds.ReferringPhysicianName = ""
    ds.StudyID = f"{study.index + 1}"
    ds.AccessionNumber = study.accession
    ds.StudyDescription = f"XR CHEST {study.view}"
    # General Series (C.7.3.1) + DX Series (C.8.11.1) / CR Series (C.8.1.1)
    ds.Modality = params.modality
    ds.SeriesInstanceUID = study.series_uid
    ds.SeriesNumber = 1
    ds.SeriesDate = study_date
    ds.SeriesTime = study_time
    ds.SeriesDescription = f"Chest {study.view}"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = study.view
    if is_dx:
        ds.PresentationIntentType = "FOR PRESENTATION"


def _add_image(ds: Dataset, study: StudyInfo, params: SynthParams) -> None:
    """General Equipment, the image modules, Modality LUT and the DX-specific attributes."""
    is_dx = params.modality == "DX"
    study_date = study.date.strftime("%Y%m%d")
    study_time = study.time.strftime("%H%M%S")
    # General Equipment (C.7.5.1)
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "synthetic chest radiograph"
    ds.InstitutionName = "dicom-annotate"
    ds.SoftwareVersions = __version__
    # General Image (C.7.6.1) + DX Image (C.8.11.3) / CR Image (C.8.1.2)
    ds.InstanceNumber = 1
    ds.ContentDate = study_date
    ds.ContentTime = study_time
    ds.AcquisitionDate = study_date
    ds.AcquisitionTime = study_time
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    # PA and AP chests are both displayed as if facing the patient: rows run to the patient's
    # left, columns to the feet.
    ds.PatientOrientation = ["L", "F"]
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    # Modality LUT (C.11.1) / DX Image: stored values are the output, no rescale
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    if is_dx:
        # values are log-attenuation-like and grow as less beam reaches the detector (bone is
        # bright): LOG with sign -1 (C.8.11.3); For Presentation MONOCHROME2 needs IDENTITY.
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = -1
        ds.PresentationLUTShape = "IDENTITY"
        ds.ImageLaterality = "U"  # DX Anatomy Imaged (C.8.11.2), Type 1: chest is unpaired
        ds.DetectorType = "SCINTILLATOR"
        ds.AcquisitionContextSequence = Sequence()  # Acquisition Context (C.7.6.14), Type 2
    # Anatomic Region Sequence (General Anatomy Mandatory Macro in DX): SCT 43799004 "Chest"
    region = Dataset()
    region.CodeValue = "43799004"
    region.CodingSchemeDesignator = "SCT"
    region.CodeMeaning = "Chest"
    ds.AnatomicRegionSequence = Sequence([region])


def _add_pixels(ds: Dataset, pixels: np.ndarray, params: SynthParams) -> None:
    """DX Detector spacing and geometry, the VOI LUT window and the Image Pixel module."""
    size = params.size
    imager_spacing = _DETECTOR_WIDTH_MM / size
    # DX Detector (C.8.11.4) and X-Ray Acquisition Dose: spacing at the detector and, corrected
    # by the geometric magnification, at the patient
    ds.ImagerPixelSpacing = [f"{imager_spacing:.6g}", f"{imager_spacing:.6g}"]
    ds.PixelSpacing = [f"{imager_spacing / _MAGNIFICATION:.6g}"] * 2
    ds.PixelSpacingCalibrationType = "GEOMETRY"
    ds.EstimatedRadiographicMagnificationFactor = f"{_MAGNIFICATION}"
    ds.DistanceSourceToDetector = "1800"
    ds.DistanceSourceToPatient = f"{1800 / _MAGNIFICATION:.1f}"
    ds.KVP = "120"
    # VOI LUT (C.11.2): a window over the 1st..99th percentile of the body
    low, high = np.percentile(pixels[::4, ::4], [1, 99])
    ds.WindowCenter = f"{(low + high) / 2:.0f}"
    ds.WindowWidth = f"{max(high - low, 1):.0f}"
    ds.WindowCenterWidthExplanation = "SYNTH"
    # Image Pixel (C.7.6.3): 16 allocated, 12/14 stored, unsigned, native little endian
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = size
    ds.Columns = size
    ds.BitsAllocated = 16
    ds.BitsStored = params.bits_stored
    ds.HighBit = params.bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype("<u2", copy=False).tobytes()


def ground_truth_record(study: StudyInfo) -> dict[str, Any]:
    """One ``ground_truth.jsonl`` line: the label shape (docs/architecture.md) plus the identifiers."""
    findings = study.plan.findings
    return {
        "sop_instance_uid": study.sop_uid,
        "patient_id": study.patient.patient_id,
        "study_instance_uid": study.study_uid,
        "series_instance_uid": study.series_uid,
        "file": study.relative_path,
        "labels": [{"name": f.name, "present": f.present} for f in findings],
        "rois": [roi for f in findings for roi in f.rois],
        "image": {"rows": study.plan.size, "columns": study.plan.size, "frame": 0},
    }
