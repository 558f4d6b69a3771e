"""DICOM image → model input: one function shared by training, evaluation and inference.

Steps (each a DICOM rule, so a model sees the same picture a radiologist's viewer would):

1. decode the first frame with pydicom (compressed transfer syntaxes through pylibjpeg's JPEG,
   JPEG-LS, JPEG 2000 and RLE plugins);
2. Modality LUT (PS3.3 C.11.1: RescaleSlope/RescaleIntercept or a Modality LUT Sequence);
3. VOI (PS3.3 C.11.2): the file's first WindowCenter/WindowWidth, applied as the linear window
   of C.11.2.1.2.1 → [0, 1]; without a window (or with ``window="minmax"``) the image's own
   0.5th..99.5th percentiles (robust min-max, so a few hot pixels do not flatten the picture);
4. MONOCHROME1 (PS3.3 C.7.6.3.1.2: minimum value is white) inverted, so bright is always dense;
   colour (RGB/YBR) images reduced to luminance;
5. padded to a square (centred, zeros) so the aspect ratio is kept, and resized to
   ``size`` x ``size`` (area averaging when shrinking, which is anti-aliased; bilinear when growing).

The output is float32 in [0, 1], shape ``(1, size, size)`` (channel first, as MONAI expects).
:class:`Preprocessing` is what ``model.json`` stores and what the disk cache is keyed by.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from typing import Any, Literal, Mapping

import numpy as np
import pydicom
import torch
import torch.nn.functional as F
from pydicom.pixels import apply_modality_lut

WindowMode = Literal["file", "minmax"]
PREPROCESSING_VERSION = 1  # bump when the steps change: old cache entries stop matching


class ImageError(ValueError):
    """A DICOM object cannot be turned into a model input; the message says why."""


@dataclass(frozen=True)
class Preprocessing:
    """How images become model inputs (stored in ``model.json``; keys the disk cache)."""

    size: int = 128
    window: WindowMode = "file"
    invert_monochrome1: bool = True
    pad_to_square: bool = True
    version: int = PREPROCESSING_VERSION

    def __post_init__(self) -> None:
        if not 16 <= int(self.size) <= 1024:
            raise ValueError(f"image size: must be between 16 and 1024 pixels, got {self.size}")
        if self.window not in ("file", "minmax"):
            raise ValueError(f"window: must be 'file' or 'minmax', got {self.window!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Preprocessing":
        known = {k: data[k] for k in ("size", "window", "invert_monochrome1", "pad_to_square", "version")
                 if k in data}
        return cls(**known)

    def key(self) -> str:
        """A short stable hash of the parameters (part of every cache file name)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def read_dicom(data: bytes, *, name: str = "DICOM object") -> pydicom.Dataset:
    """Parse DICOM Part-10 bytes; :class:`ImageError` names ``name`` when they are not DICOM."""
    try:
        return pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:  # pydicom raises several types for garbage input
        raise ImageError(f"{name}: not a readable DICOM file ({exc})") from None


def _window(ds: pydicom.Dataset) -> tuple[float, float] | None:
    """(center, width) of the first VOI window in the file, or None."""
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return None
    if isinstance(center, pydicom.multival.MultiValue):
        center = center[0]
    if isinstance(width, pydicom.multival.MultiValue):
        width = width[0]
    try:
        c, w = float(center), float(width)
    except (TypeError, ValueError):
        return None
    return (c, w) if w >= 1 else None


def pixels(ds: pydicom.Dataset, *, name: str = "DICOM object") -> np.ndarray:
    """The first frame as a 2-D float array after the Modality LUT (luminance for colour)."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImageError(f"{name}: has no pixel data (SOP class {ds.get('SOPClassUID', '?')}), not an image")
    try:
        arr = ds.pixel_array
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "?")
        raise ImageError(f"{name}: cannot decode pixel data (transfer syntax {syntax}): {exc}") from None
    frames = int(ds.get("NumberOfFrames") or 1)
    samples = int(ds.get("SamplesPerPixel") or 1)
    if frames > 1:
        arr = arr[0]
    if samples > 1:
        # pydicom converts YBR to RGB by default; ITU-R BT.601 luma
        arr = arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114
        return arr.astype(np.float32)
    if arr.ndim != 2:
        raise ImageError(f"{name}: expected a 2-D frame, got shape {arr.shape}")
    return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)


def normalise(ds: pydicom.Dataset, arr: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """VOI window (file or robust min-max) → [0, 1], MONOCHROME1 inverted."""
    window = _window(ds) if prep.window == "file" and int(ds.get("SamplesPerPixel") or 1) == 1 else None
    if window is not None:
        c, w = window
        # PS3.3 C.11.2.1.2.1, linear: below c - 0.5 - (w-1)/2 → 0, above c - 0.5 + (w-1)/2 → 1
        low = c - 0.5 - (w - 1) / 2
        out = (arr - low) / max(w - 1, 1.0)
    else:
        low, high = np.percentile(arr, [0.5, 99.5])
        out = (arr - low) / max(float(high - low), 1e-6)
    out = np.clip(out, 0.0, 1.0).astype(np.float32)
    if prep.invert_monochrome1 and str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        out = 1.0 - out
    return out


def resize(arr: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Pad to a square (centred) and resize to ``prep.size``; returns ``(1, size, size)`` float32."""
    if prep.pad_to_square:
        rows, cols = arr.shape
        side = max(rows, cols)
        if rows != cols:
            padded = np.zeros((side, side), dtype=np.float32)
            r0, c0 = (side - rows) // 2, (side - cols) // 2
            padded[r0:r0 + rows, c0:c0 + cols] = arr
            arr = padded
    t = torch.from_numpy(np.ascontiguousarray(arr))[None, None]
    size = int(prep.size)
    if t.shape[-2:] != (size, size):
        shrinking = t.shape[-1] >= size and t.shape[-2] >= size
        t = F.interpolate(t, size=(size, size), mode="area" if shrinking else "bilinear",
                          **({} if shrinking else {"align_corners": False}))
    return t[0].numpy().astype(np.float32, copy=False)


def preprocess(ds: pydicom.Dataset, prep: Preprocessing, *, name: str = "DICOM object") -> np.ndarray:
    """The whole pipeline (module docstring): a DICOM dataset → ``(1, size, size)`` in [0, 1]."""
    return resize(normalise(ds, pixels(ds, name=name), prep), prep)


def patient_key(ds: pydicom.Dataset) -> str:
    """A non-identifying key for the patient (SHA-256 of PatientID), for splitting by patient.

    Falls back to the study (then the instance) when PatientID is empty, so such images are at
    least kept together with their own study. The hash keeps PatientIDs out of caches and reports.
    """
    pid = str(ds.get("PatientID", "") or "").strip()
    basis = f"patient:{pid}" if pid else f"study:{ds.get('StudyInstanceUID', '') or ds.get('SOPInstanceUID', '')}"
    return hashlib.sha256(basis.encode()).hexdigest()[:16]
