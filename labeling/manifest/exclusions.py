"""Which DICOM objects a manifest never lists: the non-image exclusion tables.

Non-image objects are never written
-----------------------------------
Structured reports, key object selections, presentation states, RT plans/structures/doses,
segmentations, registrations, waveforms, encapsulated documents … are not images an annotator can
label. They are excluded, counted per reason, and the counts printed and written to ``--report``:

1. by the series **Modality** (:data:`NON_IMAGE_MODALITIES`), straight from the query's answer,
   without reading their instances: DICOM makes Modality a series attribute and those IODs require
   their own value (SR, KO, PR, RTSTRUCT, SEG, DOC, ECG…);
2. by the instance's **SOP Class UID**, from the ``SopClassUid`` metadata Orthanc stores at
   ingest (an index read with the bulk read, no file access: S3 storage is never touched), judged
   by :func:`sop_class_exclusion` (PS3.4 Annex B storage SOP class families), wherever the
   Modality does not tell: ``OT`` (a secondary capture, but also raw data or a PDF), an absent
   Modality (an SR without one), or a code in neither :data:`NON_IMAGE_MODALITIES` nor
   :data:`IMAGE_MODALITIES`. ``--check-sop-class`` reads it for every instance; it is not the
   default because metadata makes each instance read ~40 % dearer on Orthanc 1.10 + PostgreSQL,
   and an image Modality (DX, CT…) with a non-image SOP class breaks the DICOM IODs.

"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Optional


NON_IMAGE_MODALITIES: Final[Mapping[str, str]] = {
    # PS3.3 C.7.3.1.1.1 defined terms whose IODs hold no image to label.
    "SR": "structured reports",
    "KO": "key object selections",
    "PR": "presentation states",
    "RTSTRUCT": "RT structure sets",
    "RTPLAN": "RT plans",
    "RTDOSE": "RT dose grids",
    "RTRECORD": "RT treatment records",
    "RTINTENT": "RT physician intents",
    "RTRAD": "RT radiation sets",
    "RTSEGANN": "RT segment annotations",
    "SEG": "segmentations (derived labels)",
    "REG": "spatial registrations",
    "FID": "spatial fiducials",
    "RWV": "real world value maps",
    "SMR": "stereometric relationships",
    "DOC": "encapsulated documents",
    "PLAN": "plans",
    "ASMT": "content assessments",
    "ANN": "annotations",
    "M3D": "3D models",
    "OSS": "optical surface scans",
    "CTPROTOCOL": "CT protocols",
    "XAPROTOCOL": "XA protocols",
    "AU": "audio recordings",
    "ECG": "ECG waveforms",
    "EEG": "EEG waveforms",
    "EMG": "EMG waveforms",
    "EOG": "EOG waveforms",
    "EPS": "electrophysiology waveforms",
    "HD": "hemodynamic waveforms",
    "RESP": "respiratory waveforms",
    "POS": "position sensor waveforms",
    "LEN": "lensometry measurements",
    "KER": "keratometry measurements",
    "OAM": "ophthalmic axial measurements",
    "SRF": "subjective refraction measurements",
    "AR": "autorefraction measurements",
    "VA": "visual acuity measurements",
    "IOL": "intraocular lens calculations",
    "OPV": "visual field measurements",
}
"""Series Modality values that are never images to label, with the reason shown to the user."""

IMAGE_MODALITIES: Final = frozenset({
    "CR", "CT", "DX", "MG", "MR", "NM", "PT", "US", "XA", "RF", "IO", "PX", "OP", "OPT", "OPM",
    "ES", "SM", "XC", "GM", "IVUS", "IVOCT", "OCT", "BMD", "DMS", "RG", "TG", "LS", "RTIMAGE",
    "BI", "DG", "CFM", "TEXTUREMAP",
})
"""Series Modality values of image IODs (PS3.3 C.7.3.1.1.1): their instances' SOP class is not
read unless asked (``--check-sop-class``). ``OT``, an absent Modality or an unknown code do not
tell, so those instances are always checked."""

_STORAGE_ROOT: Final = "1.2.840.10008.5.1.4.1.1"
_NON_IMAGE_SOP_CLASS_FAMILIES: Final[tuple[tuple[str, Optional[str]], ...]] = (
    # (UID, or UID prefix ending a component, and the reason; None: an image after all.)
    # First match wins, so exceptions come before their family. PS3.4 Annex B, Table B.5-1.
    (f"{_STORAGE_ROOT}.481.1", None),                 # RT Image Storage is an image,
    (f"{_STORAGE_ROOT}.481.23", None),                # so are Enhanced RT Image
    (f"{_STORAGE_ROOT}.481.24", None),                # and Enhanced Continuous RT Image
    (f"{_STORAGE_ROOT}.481", "radiotherapy object"),  # RT dose, structure set, plan, records…
    (f"{_STORAGE_ROOT}.88.59", "key object selection"),
    (f"{_STORAGE_ROOT}.88", "structured report"),     # every SR flavour, CAD and dose SRs
    (f"{_STORAGE_ROOT}.11", "presentation state"),
    (f"{_STORAGE_ROOT}.9", "waveform"),               # ECG, audio, hemodynamic, EEG…
    (f"{_STORAGE_ROOT}.104", "encapsulated document"),  # PDF, CDA, STL, OBJ, MTL
    (f"{_STORAGE_ROOT}.66.4", "segmentation"),
    (f"{_STORAGE_ROOT}.66.5", "surface segmentation"),
    (f"{_STORAGE_ROOT}.66", "raw data, registration or fiducials"),
    (f"{_STORAGE_ROOT}.67", "real world value mapping"),
    (f"{_STORAGE_ROOT}.68", "surface scan"),
    (f"{_STORAGE_ROOT}.77.1.5.3", "stereometric relationship"),
    (f"{_STORAGE_ROOT}.78", "ophthalmic measurements"),
    (f"{_STORAGE_ROOT}.79.1", "ophthalmic report"),
    (f"{_STORAGE_ROOT}.80.1", "visual field measurements"),
    (f"{_STORAGE_ROOT}.90.1", "content assessment"),
    (f"{_STORAGE_ROOT}.91.1", "bulk annotations"),
    (f"{_STORAGE_ROOT}.4.2", "MR spectroscopy"),
    (f"{_STORAGE_ROOT}.8", "standalone overlay"),
    (f"{_STORAGE_ROOT}.10", "standalone modality LUT"),
    (f"{_STORAGE_ROOT}.129", "standalone PET curve"),
    (f"{_STORAGE_ROOT}.131", "structured display"),
    (f"{_STORAGE_ROOT}.200", "procedure protocol"),
)


def modality_exclusion(modality: Optional[str]) -> Optional[str]:
    """Why a series of this Modality is left out (``"modality SR: structured reports"``), or None."""
    reason = NON_IMAGE_MODALITIES.get((modality or "").strip().upper())
    return f"modality {modality.strip().upper()}: {reason}" if reason and modality else None


def needs_sop_class_check(modality: Optional[str]) -> bool:
    """True when the series Modality does not tell whether its instances are images."""
    code = (modality or "").strip().upper()
    return code not in IMAGE_MODALITIES and code not in NON_IMAGE_MODALITIES


def sop_class_exclusion(sop_class_uid: Optional[str]) -> Optional[str]:
    """Why an instance of this SOP Class UID is left out, or None for an image (or unknown) class.

    Unknown or private classes are kept: a class is excluded only when it belongs to a family of
    PS3.4 non-image storage classes, so a new image class never silently disappears.
    """
    uid = (sop_class_uid or "").strip()
    if not uid:
        return None
    for prefix, reason in _NON_IMAGE_SOP_CLASS_FAMILIES:
        if uid == prefix or uid.startswith(prefix + "."):
            if reason is None:
                return None
            return f"SOP class {_sop_class_name(uid)}: {reason}"
    return None


def _sop_class_name(uid: str) -> str:
    try:
        from pydicom.uid import UID  # names only; pydicom is a project dependency (synth)
    except ImportError:  # pragma: no cover - pydicom is installed with the project
        return uid
    name = UID(uid).name
    return f"{name} ({uid})" if name and name != uid else uid

