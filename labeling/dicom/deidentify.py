"""De-identification: DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile.

Annotators see images only after this step (docs/architecture.md, "Security posture"). The profile's
action codes (PS3.15 Table E.1-1, "Application Level Confidentiality Profile Attributes") are applied
with pydicom, recursively through every sequence:

- **X** remove, **Z** replace with a zero-length value, **D** replace with a dummy value,
  **U** replace a UID with a consistent, non-identifying UID, **K** keep.
- Where the table offers a choice (``X/Z``, ``Z/D``, ``X/Z/D``...) the least revealing choice that
  keeps the data set valid is taken: **Z** for attributes that are Type 2 in the common image IODs
  (PatientName, PatientID, PatientBirthDate, PatientSex, StudyDate, StudyTime, ReferringPhysicianName,
  AccessionNumber, StudyID, ContentDate/ContentTime), **X** for everything else.

Decisions (documented here because the profile leaves them to the implementation):

- **Dates and times** are removed, not shifted. Every DA, DT and TM attribute (including ones nested
  in sequences) is emptied (Type 2 list above) or removed; AgeString PatientAge is removed. Shifting
  is the *Retain Longitudinal Temporal Information with Modified Dates* option (PS3.15 Table E.1-1,
  column "Rtn. Long. Modif. Dates Opt."), which this profile does not claim. LongitudinalTemporal-
  InformationModified (0028,0303) is set to ``REMOVED``.
- **Names**: every PN attribute (all of them identify a person, PS3.15 E.1.1) is emptied or removed.
- **UIDs** (action U): every UI value except well-known DICOM UIDs (``1.2.840.10008.*``: SOP classes,
  transfer syntaxes, coding schemes) and the class/syntax attributes in :data:`KEEP_UIDS` is replaced
  with ``2.25.<decimal of the first 128 bits of HMAC-SHA256(salt, uid)>`` (PS3.5 B.2, UUID-derived
  UIDs). The same input UID and salt always give the same output, so instances of one series stay in
  one series, references between objects stay consistent and re-staging is idempotent; without the
  per-deployment salt the original UIDs cannot be recovered or confirmed by hashing guesses.
  MediaStorageSOPInstanceUID (file meta) follows SOPInstanceUID.
- **Private attributes** are removed (PS3.15 E.3.10 — the Retain Safe Private option is not claimed),
  as is the file meta's SourceApplicationEntityTitle.
- **Overlays and curves**: Overlay Data (60xx,3000) and Overlay Comments (60xx,4000) are X in Table
  E.1-1 and Curve Data (50xx,xxxx) is X; the whole 60xx overlay groups and 50xx curve groups are
  removed, so no incomplete overlay module is left behind (overlays can hold burned-in text).
- **Pixel data is never decoded or modified**: PixelData, its encapsulation (fragments, Basic Offset
  Table) and the transfer syntax are written back byte for byte. BurnedInAnnotation (0028,0301) is left
  unchanged: the Clean Pixel Data option (PS3.15 E.3.1) is not applied, so an image whose pixels carry
  burned-in identifiers still carries them; :func:`burned_in_annotation` lets callers flag those.
- **Kept** (not in Table E.1-1, or K there): everything the viewer needs to display the pixels —
  see :data:`DISPLAY_KEYWORDS` — plus Modality, SOPClassUID, SpecificCharacterSet, ImageType,
  Manufacturer/model and other technical attributes the table does not list.
- PatientIdentityRemoved (0012,0062) = ``YES``; DeidentificationMethod (0012,0063) and
  DeidentificationMethodCodeSequence (0012,0064) = (113100, DCM, "Basic Application Confidentiality
  Profile") as PS3.15 E.1.1 asks.
"""

from __future__ import annotations

import hashlib
import hmac
import io
from typing import Any, Iterable, Optional

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence

DEIDENTIFICATION_METHOD = "DICOM PS3.15 Annex E Basic Profile (dicom-annotate)"  # LO: at most 64 chars
BASIC_PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")  # PS3.16 CID 7050

DISPLAY_KEYWORDS = frozenset({
    "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "PhotometricInterpretation", "SamplesPerPixel", "PlanarConfiguration", "WindowCenter", "WindowWidth",
    "WindowCenterWidthExplanation", "VOILUTFunction", "RescaleSlope", "RescaleIntercept", "RescaleType",
    "PixelSpacing", "ImagerPixelSpacing", "NumberOfFrames", "FrameIncrementPointer", "Modality",
    "BodyPartExamined", "ViewPosition", "PixelData", "FloatPixelData", "DoubleFloatPixelData",
    "PixelAspectRatio", "LossyImageCompression", "LossyImageCompressionRatio", "LossyImageCompressionMethod",
    "ImageType", "SOPClassUID", "SpecificCharacterSet", "PresentationLUTShape",
    "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor", "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData", "BluePaletteColorLookupTableData",
})
"""Attributes the viewer needs; never touched (a unit test checks no table entry hits one)."""

KEEP_UIDS = frozenset({
    "SOPClassUID", "MediaStorageSOPClassUID", "ReferencedSOPClassUID", "ReferencedSOPClassUIDInFile",
    "AffectedSOPClassUID", "RequestedSOPClassUID", "TransferSyntaxUID", "ReferencedTransferSyntaxUIDInFile",
    "ImplementationClassUID", "CodingSchemeUID", "ContextGroupExtensionCreatorUID", "MappingResourceUID",
    "PrivateInformationCreatorUID", "SOPClassesInStudy",
})
"""UI attributes that name a class, syntax or scheme, not an instance: kept (vendor class UIDs too)."""

WELL_KNOWN_UID_ROOT = "1.2.840.10008."

# PS3.15 Table E.1-1, Basic Profile column: the common attributes. "Z" empties, "X" removes.
# Attributes of VR PN, DA, DT, TM and UI are handled by VR (see the module docstring) and need no row.
EMPTY = frozenset({  # Z (or a Z choice): Type 2 in the common image IODs
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "AccessionNumber", "StudyID", "ContentDate", "ContentTime",
    "ContentCreatorName", "VerifyingObserverName", "VerifyingObserverIdentificationCodeSequence",
})
REMOVE = frozenset({  # X (or an X choice)
    # patient
    "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientBirthName",
    "PatientMotherBirthName", "PatientAddress", "PatientTelephoneNumbers", "PatientTelecomInformation",
    "PatientAge", "PatientSize", "PatientWeight", "EthnicGroup", "Occupation", "AdditionalPatientHistory",
    "PatientComments", "MedicalRecordLocator", "MilitaryRank", "BranchOfService", "CountryOfResidence",
    "RegionOfResidence", "PatientReligiousPreference", "MedicalAlerts", "Allergies", "PregnancyStatus",
    "SmokingStatus", "LastMenstrualDate", "SpecialNeeds", "PatientState", "PatientBirthTime",
    "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence", "TypeOfPatientID", "PatientInsurancePlanCodeSequence",
    "PatientPrimaryLanguageCodeSequence", "InsurancePlanIdentification", "ReferencedPatientSequence",
    "ReferencedPatientPhotoSequence", "ResponsiblePerson", "ResponsiblePersonRole", "ResponsibleOrganization",
    "PatientSexNeutered", "PatientSpeciesDescription", "PatientBreedDescription",
    "ConfidentialityConstraintOnPatientDataDescription", "PatientTransportArrangements",
    # visit / request / procedure
    "AdmissionID", "IssuerOfAdmissionIDSequence", "AdmittingDiagnosesDescription",
    "AdmittingDiagnosesCodeSequence", "ServiceEpisodeID", "ServiceEpisodeDescription",
    "CurrentPatientLocation", "PatientInstitutionResidence", "VisitComments",
    "RequestAttributesSequence", "RequestedProcedureID", "RequestedProcedureDescription",
    "RequestedProcedureComments", "RequestingService", "ReasonForTheRequestedProcedure",
    "ScheduledProcedureStepID", "ScheduledProcedureStepDescription", "PerformedProcedureStepID",
    "PerformedProcedureStepDescription", "PerformedProcedureStepStartDate", "PerformedLocation",
    "PerformedStationName", "PerformedStationAETitle", "ScheduledStationName", "ScheduledStationAETitle",
    "ReferencedStudySequence", "ReferencedPerformedProcedureStepSequence", "PlacerOrderNumberImagingServiceRequest",
    "FillerOrderNumberImagingServiceRequest", "OrderEntererLocation", "OrderCallbackPhoneNumber",
    "ImagingServiceRequestComments", "IssuerOfAccessionNumberSequence", "ReasonForStudy",
    "RequestingPhysicianIdentificationSequence", "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers", "ReferringPhysicianIdentificationSequence",
    "ConsultingPhysicianIdentificationSequence", "PhysiciansOfRecordIdentificationSequence",
    "PerformingPhysicianIdentificationSequence", "PhysiciansReadingStudyIdentificationSequence",
    "OperatorIdentificationSequence",
    # institution / equipment
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "InstitutionCodeSequence",
    "InstitutionalDepartmentTypeCodeSequence", "StationName", "DeviceSerialNumber", "DeviceUID",
    "DetectorID", "GantryID", "PlateID", "CassetteID", "GeneratorID", "SourceSerialNumber",
    "TimezoneOffsetFromUTC", "ModifyingDeviceID", "ModifyingDeviceManufacturer", "ModifiedAttributesSequence",
    "OriginalAttributesSequence", "DigitalSignaturesSequence", "MACParametersSequence",
    # free text that may name or describe the patient
    "StudyDescription", "SeriesDescription", "ProtocolName", "ImageComments", "FrameComments",
    "DerivationDescription", "AcquisitionComments", "AcquisitionDeviceProcessingDescription",
    "AdditionalPatientHistory", "InterpretationText", "InterpretationDiagnosisDescription",
    "ResultsComments", "TextString", "TextComments", "ContrastBolusAgent", "ScheduledPatientInstitutionResidence",
    "DischargeDiagnosisDescription", "IdentifyingComments", "CommentsOnThePerformedProcedureStep",
    "StudyComments", "TopicTitle", "TopicSubject", "TopicAuthor", "TopicKeywords",
    "PersonAddress", "PersonTelephoneNumbers", "PersonIdentificationCodeSequence",
    "DistributionAddress", "DistributionName", "ClinicalTrialSponsorName",
})
assert not (EMPTY | REMOVE) & DISPLAY_KEYWORDS, "the profile table must never hit a display attribute"

_DATE_VRS = frozenset({"DA", "DT", "TM"})


# The salt of local runs when none is configured: replacement UIDs are then reproducible by anyone.
DEV_SALT = b"dicom-annotate-dev-salt-NOT-FOR-PRODUCTION"


class SaltError(ValueError):
    """The configured de-identification salt is unusable; the message names its secret and what is wrong."""


def salt_setting(value: Optional[str]) -> bytes:
    """A salt given as a plain setting (local runs): its UTF-8 bytes, or :data:`DEV_SALT` when unset."""
    return value.encode("utf-8") if value else DEV_SALT


def read_salt(secret_arn: Optional[str], setting: bytes, secrets_client: Any = None) -> bytes:
    """The de-identification salt of the GT pre-label Lambda and the portal: in AWS the SecretString of
    its own secret (``DEIDENTIFY_SALT_SECRET_ARN``, never a plain environment value), else ``setting``.

    The keyed UID replacement (:func:`uid_for`) is only as secret as this value, so an empty secret is
    refused (:class:`SaltError`) rather than replaced by a default. Callers cache the result.
    """
    if not secret_arn:
        return setting
    if secrets_client is None:
        import boto3

        secrets_client = boto3.client("secretsmanager")
    raw = secrets_client.get_secret_value(SecretId=secret_arn)["SecretString"]
    if not raw:
        raise SaltError(f"de-identification salt secret {secret_arn}: it is empty; it must hold a non-empty "
                        "string (the per-deployment salt)")
    return raw.encode("utf-8")


def uid_for(uid: str, salt: bytes) -> str:
    """The replacement for one instance UID: ``2.25.<128-bit HMAC-SHA256(salt, uid)>`` (PS3.5 B.2)."""
    digest = hmac.new(salt, uid.strip("\0 ").encode("ascii", "replace"), hashlib.sha256).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def _replace_uid(value: str, keyword: str, salt: bytes) -> str:
    value = str(value).strip("\0 ")
    if not value or keyword in KEEP_UIDS or value.startswith(WELL_KNOWN_UID_ROOT):
        return value
    return uid_for(value, salt)


def _is_overlay_or_curve(tag) -> bool:
    group = tag.group
    # Repeating groups 60xx (overlays) and 50xx (curves, retired): even groups 0x6000-0x601E / 0x5000-0x501E.
    return group % 2 == 0 and (0x6000 <= group <= 0x601E or 0x5000 <= group <= 0x501E)


def _clean(ds: Dataset, salt: bytes) -> None:
    for elem in list(ds):
        tag, keyword, vr = elem.tag, elem.keyword, elem.VR
        if tag.is_private or _is_overlay_or_curve(tag):
            del ds[tag]
        elif keyword in DISPLAY_KEYWORDS:
            continue
        elif keyword in EMPTY:
            elem.value = None if vr != "SQ" else Sequence()
        elif keyword in REMOVE:
            del ds[tag]
        elif vr == "PN" or vr in _DATE_VRS:
            del ds[tag]  # the Type 2 ones (EMPTY) were emptied above
        elif vr == "UI":
            if elem.VM > 1:
                elem.value = [_replace_uid(v, keyword, salt) for v in elem.value]
            elif elem.value:
                elem.value = _replace_uid(elem.value, keyword, salt)
        elif vr == "SQ":
            for item in elem.value:
                _clean(item, salt)


def burned_in_annotation(ds: Dataset) -> bool:
    """True when the object says its pixels carry burned-in text (0028,0301 = YES): not cleaned here."""
    return str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES"


def deidentify_dataset(ds: Dataset, *, salt: bytes) -> Dataset:
    """Apply the Basic Profile to ``ds`` in place (and its file meta) and return it.

    Pixel data and the attributes in :data:`DISPLAY_KEYWORDS` are not touched; see the module
    docstring for the per-attribute decisions (PS3.15 Annex E, Table E.1-1).
    """
    if not isinstance(salt, (bytes, bytearray)) or not salt:
        raise ValueError("salt: a non-empty bytes value is required (the per-deployment DEIDENTIFY_SALT)")
    salt = bytes(salt)
    _clean(ds, salt)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = DEIDENTIFICATION_METHOD
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = BASIC_PROFILE_CODE
    ds.DeidentificationMethodCodeSequence = Sequence([code])
    ds.LongitudinalTemporalInformationModified = "REMOVED"
    meta = getattr(ds, "file_meta", None)
    if isinstance(meta, FileMetaDataset):
        if "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        elif "MediaStorageSOPInstanceUID" in meta:
            meta.MediaStorageSOPInstanceUID = _replace_uid(meta.MediaStorageSOPInstanceUID, "", salt)
        for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                        "ReceivingApplicationEntityTitle", "SourcePresentationAddress",
                        "SendingPresentationAddress", "ReceivingPresentationAddress"):
            if keyword in meta:
                delattr(meta, keyword)
        for elem in list(meta):
            if elem.tag.is_private:
                del meta[elem.tag]
    return ds


def deidentify(data: bytes, *, salt: bytes) -> bytes:
    """De-identify one DICOM Part 10 file (bytes in, bytes out, same transfer syntax).

    Raises ValueError when ``data`` is not a DICOM file pydicom can read.
    """
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, ValueError) as exc:
        raise ValueError(f"not a readable DICOM file: {exc}") from None
    deidentify_dataset(ds, salt=salt)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def identifying_keywords() -> Iterable[str]:
    """Every keyword this module empties or removes by name (for tests and documentation)."""
    return sorted(EMPTY | REMOVE)
