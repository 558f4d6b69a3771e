"""The Orthanc instance ID: what a manifest line's ``source`` holds, checked and computed in one place.

Orthanc's resource IDs are SHA-1 hashes of the DICOM UIDs written as five dash-separated groups of
8 lower-case hex digits (Orthanc Book, "Orthanc identifiers"); an instance's is derived from its
PatientID, StudyInstanceUID, SeriesInstanceUID and SOPInstanceUID. Checking the form before an ID
becomes part of a URL, an S3 key or a file name keeps path tricks (``../``) out of all of them.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Final

ORTHANC_ID: Final = re.compile(r"[0-9a-f]{8}(?:-[0-9a-f]{8}){4}")


def validate_instance_id(value: Any, field: str = "dataObject.source") -> str:
    """An Orthanc instance ID (SHA-1 in five dash-separated groups of 8 hex digits), else ValueError
    naming ``field`` (the GT pre-label event's key by default)."""
    if not isinstance(value, str) or not ORTHANC_ID.fullmatch(value):
        raise ValueError(f"{field}: {value!r} is not an Orthanc instance ID (expected five groups "
                         "of 8 lower-case hex digits separated by '-', e.g. "
                         "'0a9b4f3c-1d2e3f40-5a6b7c8d-9e0f1a2b-3c4d5e6f')")
    return value


def orthanc_hash(text: str) -> str:
    """Orthanc's resource ID format: SHA-1 in five dash-separated groups of 8 hex digits."""
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()
    return "-".join(digest[i:i + 8] for i in range(0, 40, 8))


def orthanc_instance_id(patient_id: str, study_uid: str, series_uid: str, sop_instance_uid: str) -> str:
    """The ID Orthanc gives an instance (Orthanc Book, "Orthanc identifiers")."""
    return orthanc_hash(f"{patient_id}|{study_uid}|{series_uid}|{sop_instance_uid}")
