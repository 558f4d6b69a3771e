"""Synthetic chest-radiograph DICOM dataset with ground truth (`python -m devkit synth`).

What it makes: several patients, each with one or more studies; every study holds one series with
one frontal chest image (PA or AP view). Images are DX (PS3.3 A.26 "Digital X-Ray Image IOD",
SOP class Digital X-Ray Image Storage - For Presentation) by default or CR (PS3.3 A.2 "Computed
Radiography Image IOD"), 16 bits allocated, 12 or 14 bits stored, unsigned, MONOCHROME2, written
as DICOM Part-10 files (PS3.10) in Explicit VR Little Endian (PS3.5 A.2).

The image is a chest-like picture (body, two dark lung fields, brighter mediastinum, heart and
spine, faint curved rib bands, noise) with three findings drawn independently, each present with
its own prevalence:

* ``Opacity``  - one or two soft Gaussian blobs inside a lung field;
                 ROI: one ``ellipse`` per blob, box = centre +/- 2 sigma on each axis.
* ``Device``   - a bright thin tube (central line from the shoulder, or nasogastric tube down the
                 midline), drawn along a polyline;
                 ROI: one ``polygon`` outlining the drawn tube (the polyline offset by the tube's
                 half-width + 1 px on both sides), so the polygon has a real area and IoU works.
* ``Effusion`` - a haze rising towards one lung base (costophrenic angle);
                 ROI: one ``rectangle`` over that lung base; the haze is zero outside it.

The ground truth is written aside, never into the DICOM files: ``ground_truth.jsonl`` has one line
per image in the label shape of docs/architecture.md ("The label shape"): ``labels`` (one
``{"name", "present"}`` per finding, in :data:`FINDINGS` order), ``rois`` (``label``, ``shape``,
``points`` in image pixels: x = column, y = row, origin at the frame's top-left corner, so pixel
(c, r) has its centre at (c + 0.5, r + 0.5)) and ``image`` (rows, columns, frame 0).

Determinism: every random draw comes from a NumPy generator seeded by (seed, patient, study), and
every UID from :func:`pydicom.uid.generate_uid` with ``entropy_srcs`` built from the parameters that
change the content (seed, size, modality, bits stored, prevalences) plus the patient/study index.
The same parameters give byte-identical files and the same UIDs (so Orthanc answers
``AlreadyStored`` on a re-upload); a different seed gives different UIDs. The number of patients
does not enter the UIDs: patient 7 of a 20-patient run is patient 7 of a 250-patient run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)

from labeling import __version__
from labeling.cli import add_progress_argument, one_line_errors
from labeling.outdir import OutputDirError, sigterm_as_interrupt, staged_output_dir

FINDINGS: Final = ("Opacity", "Device", "Effusion")
"""The finding (label) names synth draws; ``schemas/chest-xray.yaml`` must list exactly these."""

ROI_SHAPES: Final = {"Opacity": "ellipse", "Device": "polygon", "Effusion": "rectangle"}
"""The ROI shape synth writes for each finding (each must be allowed by the demo schema)."""

SCHEMA_PATH: Final = "schemas/chest-xray.yaml"  # the demo schema, relative to the repository root
DEFAULT_PREVALENCE: Final = 0.35
MODALITIES: Final = ("DX", "CR")
MIN_SIZE: Final = 64
MAX_SIZE: Final = 2048
BITS_STORED_CHOICES: Final = (12, 14)
MAX_PATIENTS: Final = 100_000
MAX_STUDIES_PER_PATIENT: Final = 50

GROUND_TRUTH_FILE: Final = "ground_truth.jsonl"
SUMMARY_FILE: Final = "dataset.json"
MANUFACTURER: Final = "dicom-annotate synth"

# pydicom's UID root, generate_uid's default (PS3.5 9.1: a UID is <org root>.<suffix>); spelled
# out so a pydicom upgrade cannot change our UIDs.
_UID_PREFIX: Final = "1.2.826.0.1.3680043.8.498."
_DETECTOR_WIDTH_MM: Final = 430.0  # a 43 cm flat panel: the usual chest detector
_MAGNIFICATION: Final = 1.1  # source-to-detector / source-to-patient for a chest stand
_DATE_ORIGIN: Final = dt.date(2019, 1, 1)
_DATE_SPAN_DAYS: Final = 6 * 365  # studies fall in 2019-01-01 .. 2024-12-30
_MAX_FOLLOW_UP_DAYS: Final = 3 * 365  # the last of at most 50 studies, after the first

_FAMILY_NAMES: Final = (
    "Adams", "Baker", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Haddad", "Ivanova", "Jensen",
    "Kowalski", "Lopez", "Moreau", "Nakamura", "Okafor", "Patel", "Quinn", "Rossi", "Schmidt",
    "Tanaka", "Umar", "Varga", "Walsh", "Xu", "Yilmaz", "Zhang",
)
_GIVEN_NAMES: Final = {
    "F": ("Alice", "Beatriz", "Chloe", "Dana", "Elif", "Fatima", "Grace", "Hana", "Ines", "Julia"),
    "M": ("Aaron", "Bruno", "Carlos", "David", "Emil", "Farid", "George", "Hiro", "Ivan", "Jonas"),
}


# --- parameters ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthParams:
    """Validated generation parameters (see :func:`generate_dataset`)."""

    patients: int = 20
    studies_per_patient: tuple[int, int] = (2, 2)  # inclusive range; (n, n) = exactly n
    size: int = 256
    seed: int = 0
    prevalence: Mapping[str, float] = field(
        default_factory=lambda: {name: DEFAULT_PREVALENCE for name in FINDINGS}
    )
    modality: str = "DX"
    bits_stored: int = 12

    def content_key(self) -> str:
        """The parameters that change an image's content, canonically: the UIDs' entropy source.

        ``patients`` and ``studies_per_patient`` are left out on purpose: they only decide how
        many images there are, not what image (patient p, study k) looks like.
        """
        return json.dumps(
            {
                "generator": "dicom-annotate synth v1",
                "seed": self.seed,
                "size": self.size,
                "modality": self.modality,
                "bits_stored": self.bits_stored,
                "prevalence": {name: self.prevalence[name] for name in FINDINGS},
            },
            sort_keys=True,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "patients": self.patients,
            "studies_per_patient": list(self.studies_per_patient),
            "size": self.size,
            "seed": self.seed,
            "prevalence": {name: self.prevalence[name] for name in FINDINGS},
            "modality": self.modality,
            "bits_stored": self.bits_stored,
        }


def make_params(
    *,
    patients: int = 20,
    studies_per_patient: int | tuple[int, int] = 2,
    size: int = 256,
    seed: int = 0,
    prevalence: float | Mapping[str, float] = DEFAULT_PREVALENCE,
    modality: str = "DX",
    bits_stored: int = 12,
) -> SynthParams:
    """Check and normalise the parameters; ValueError names the parameter and the problem."""
    _check_int("patients", patients, 1, MAX_PATIENTS)
    low, high = (
        (studies_per_patient, studies_per_patient)
        if isinstance(studies_per_patient, int)
        else tuple(studies_per_patient)
    )
    _check_int("studies_per_patient", low, 1, MAX_STUDIES_PER_PATIENT)
    _check_int("studies_per_patient", high, 1, MAX_STUDIES_PER_PATIENT)
    if low > high:
        raise ValueError(f"studies_per_patient: range {low}-{high} is empty (minimum > maximum)")
    _check_int("size", size, MIN_SIZE, MAX_SIZE)
    _check_int("seed", seed, 0, 2**63 - 1)
    if modality not in MODALITIES:
        raise ValueError(f"modality: must be one of {', '.join(MODALITIES)}, got {modality!r}")
    if bits_stored not in BITS_STORED_CHOICES:
        raise ValueError(f"bits_stored: must be 12 or 14, got {bits_stored!r}")
    return SynthParams(
        patients=patients,
        studies_per_patient=(low, high),
        size=size,
        seed=seed,
        prevalence=_normalise_prevalence(prevalence),
        modality=modality,
        bits_stored=bits_stored,
    )


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name}: must be between {low} and {high}, got {value}")


def _normalise_prevalence(prevalence: float | Mapping[str, float]) -> dict[str, float]:
    if isinstance(prevalence, Mapping):
        by_name = {name.casefold(): name for name in FINDINGS}
        result = {name: DEFAULT_PREVALENCE for name in FINDINGS}
        for key, value in prevalence.items():
            name = by_name.get(str(key).casefold())
            if name is None:
                raise ValueError(
                    f"prevalence: unknown finding {key!r}; expected one of {', '.join(FINDINGS)}"
                )
            result[name] = _check_probability(f"prevalence[{name}]", value)
        return result
    value = _check_probability("prevalence", prevalence)
    return {name: value for name in FINDINGS}


def _check_probability(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}: must be a number between 0 and 1, got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name}: must be between 0 and 1, got {value}")
    return float(value)


# --- what to draw: plans ---------------------------------------------------------------------
# All coordinates in a plan are image pixels (x = column, y = row, continuous, pixel centres at
# +0.5), the coordinates of the ground truth, so drawing and ROIs cannot disagree on a transform.


@dataclass(frozen=True)
class Ellipse:
    """An axis-aligned ellipse: centre and semi-axes, in pixels."""

    cx: float
    cy: float
    ax: float
    ay: float


@dataclass(frozen=True)
class Anatomy:
    body: Ellipse
    lungs: tuple[Ellipse, Ellipse]  # image-left (patient right), image-right (patient left)
    heart: Ellipse
    spine_x: float
    spine_width: float
    rib_spacing: float
    rib_phase: float
    rib_curve: float  # pixels of downward bend per pixel^2 of lateral distance
    clavicles: tuple[tuple[float, float, float, float], ...]  # (x0, y0, x1, y1): medial, lateral
    clavicle_width: float


@dataclass(frozen=True)
class Blob:
    """Opacity: a Gaussian bump (sigmas in pixels) of peak ``amplitude`` (attenuation units)."""

    cx: float
    cy: float
    sx: float
    sy: float
    amplitude: float


@dataclass(frozen=True)
class Tube:
    """Device: a bright band of ``half_width`` pixels around a polyline."""

    points: tuple[tuple[float, float], ...]
    half_width: float
    amplitude: float


@dataclass(frozen=True)
class Haze:
    """Effusion: density rising from ``top`` to ``bottom`` inside one lung, clipped to ``box``."""

    lung: Ellipse
    top: float
    bottom: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    amplitude: float


Mark = Blob | Tube | Haze


@dataclass(frozen=True)
class Finding:
    name: str
    present: bool
    marks: tuple[Mark, ...]  # drawn only when present; planned always (see _plan_findings)
    rois: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class ImagePlan:
    """Everything needed to render one image deterministically."""

    size: int
    anatomy: Anatomy
    gain: float
    noise_sigma: float
    noise_seed: tuple[int, ...]
    findings: tuple[Finding, ...]
    max_value: int


@dataclass(frozen=True)
class PatientInfo:
    index: int
    patient_id: str
    name: str
    sex: str
    birth_date: dt.date
    first_study: dt.date
    study_interval: int  # days between follow-up studies
    studies: int
    anatomy: Anatomy  # in units of the image side (0..1); each study jitters and scales it


@dataclass(frozen=True)
class StudyInfo:
    patient: PatientInfo
    index: int
    study_uid: str
    series_uid: str
    sop_uid: str
    accession: str
    date: dt.date
    time: dt.time
    view: str
    plan: ImagePlan

    @property
    def relative_path(self) -> str:
        """``<PatientID>/<StudyInstanceUID>/<SOPInstanceUID>.dcm`` (one image per series)."""
        return f"{self.patient.patient_id}/{self.study_uid}/{self.sop_uid}.dcm"


def _rng(params: SynthParams, stream: int, *indices: int) -> np.random.Generator:
    # One independent stream per (purpose, patient, study): no draw depends on any other image,
    # on the number of patients or on the order of generation.
    return np.random.default_rng([params.seed, stream, *indices])


def _uid(params: SynthParams, kind: str, *indices: int) -> str:
    key = f"{params.content_key()}|{kind}|{'/'.join(str(i) for i in indices)}"
    return str(generate_uid(prefix=_UID_PREFIX, entropy_srcs=[key]))


def plan_patient(params: SynthParams, index: int) -> PatientInfo:
    """Demographics and (unit-square) anatomy of patient ``index``."""
    rng = _rng(params, 1, index)
    sex = "F" if rng.random() < 0.5 else "M"
    family = _FAMILY_NAMES[rng.integers(len(_FAMILY_NAMES))]
    given = _GIVEN_NAMES[sex][rng.integers(len(_GIVEN_NAMES[sex]))]
    age_days = int(rng.integers(18 * 365, 90 * 365))
    first_study = _DATE_ORIGIN + dt.timedelta(days=int(rng.integers(0, _DATE_SPAN_DAYS - _MAX_FOLLOW_UP_DAYS)))
    study_interval = int(rng.integers(7, _MAX_FOLLOW_UP_DAYS // MAX_STUDIES_PER_PATIENT + 1))
    spread = rng.uniform(0.17, 0.21)  # lung centre distance from the midline
    lung_ax = rng.uniform(0.12, 0.145)
    lung_ay = rng.uniform(0.27, 0.32)
    lung_cy = rng.uniform(0.42, 0.47)
    anatomy = Anatomy(
        body=Ellipse(0.5 + rng.normal(0, 0.008), 0.62, rng.uniform(0.41, 0.46), 0.62),
        lungs=(
            Ellipse(0.5 - spread, lung_cy, lung_ax, lung_ay),
            # patient-left lung: a little narrower, the heart takes its place
            Ellipse(0.5 + spread, lung_cy + 0.01, lung_ax * 0.95, lung_ay * 0.97),
        ),
        heart=Ellipse(0.54 + rng.uniform(0, 0.03), lung_cy + lung_ay * 0.62, rng.uniform(0.13, 0.16), 0.11),
        spine_x=0.5,
        spine_width=rng.uniform(0.025, 0.035),
        rib_spacing=rng.uniform(0.065, 0.08),
        rib_phase=rng.uniform(0, 1),
        rib_curve=rng.uniform(0.8, 1.6),
        clavicles=tuple(
            # from the sternal end up and out to the shoulder
            (0.5 + side * 0.045, lung_cy - lung_ay - 0.005,
             0.5 + side * (spread + lung_ax + 0.02), lung_cy - lung_ay - rng.uniform(0.05, 0.09))
            for side in (-1, 1)
        ),
        clavicle_width=rng.uniform(0.008, 0.011),
    )
    # drawn last: the range changes how many draws `integers` takes, and nothing above should move
    low, high = params.studies_per_patient
    studies = int(rng.integers(low, high + 1))
    return PatientInfo(
        index=index,
        # the seed is part of the ID so runs with different seeds never merge patients in Orthanc
        patient_id=f"SYN{params.seed}-{index + 1:05d}",
        name=f"{family}^{given}",
        sex=sex,
        birth_date=_DATE_ORIGIN - dt.timedelta(days=age_days),
        first_study=first_study,
        study_interval=study_interval,
        studies=studies,
        anatomy=anatomy,
    )


def plan_study(params: SynthParams, patient: PatientInfo, index: int) -> StudyInfo:
    """Metadata and image plan of study ``index`` of ``patient``."""
    rng = _rng(params, 2, patient.index, index)
    date = patient.first_study + dt.timedelta(days=index * patient.study_interval + int(rng.integers(0, 3)))
    seconds = int(rng.integers(7 * 3600, 20 * 3600))
    view = "PA" if rng.random() < 0.7 else "AP"
    study_uid = _uid(params, "study", patient.index, index)
    anatomy = _place_anatomy(patient.anatomy, params.size, rng, view)
    findings = _plan_findings(params, anatomy, rng)
    plan = ImagePlan(
        size=params.size,
        anatomy=anatomy,
        gain=float(rng.uniform(0.95, 1.05)),
        noise_sigma=float(rng.uniform(0.008, 0.016)),
        noise_seed=(params.seed, 3, patient.index, index),
        findings=findings,
        max_value=2**params.bits_stored - 1,
    )
    return StudyInfo(
        patient=patient,
        index=index,
        study_uid=study_uid,
        series_uid=_uid(params, "series", patient.index, index),
        sop_uid=_uid(params, "sop", patient.index, index),
        # SH, at most 16 characters; derived from the study UID so it is unique where it is
        accession=f"SYN{int(hashlib.sha256(study_uid.encode()).hexdigest(), 16) % 10**12:012d}",
        date=date,
        time=dt.time(seconds // 3600, seconds % 3600 // 60, seconds % 60),
        view=view,
        plan=plan,
    )


def _place_anatomy(unit: Anatomy, size: int, rng: np.random.Generator, view: str) -> Anatomy:
    """Scale the patient's unit anatomy to pixels with a small per-study shift and zoom."""
    zoom = size * rng.uniform(0.97, 1.03)
    shift_x = size * rng.normal(0, 0.01)
    shift_y = size * rng.normal(0, 0.01)
    centre = size / 2

    def point(x: float, y: float) -> tuple[float, float]:
        return centre + (x - 0.5) * zoom + shift_x, centre + (y - 0.5) * zoom + shift_y

    def place(e: Ellipse, widen: float = 1.0) -> Ellipse:
        return Ellipse(
            centre + (e.cx - 0.5) * zoom + shift_x,
            centre + (e.cy - 0.5) * zoom + shift_y,
            e.ax * zoom * widen,
            e.ay * zoom,
        )

    return Anatomy(
        body=place(unit.body),
        lungs=(place(unit.lungs[0]), place(unit.lungs[1])),
        # an AP projection magnifies the heart (it is further from the detector)
        heart=place(unit.heart, 1.12 if view == "AP" else 1.0),
        spine_x=centre + (unit.spine_x - 0.5) * zoom + shift_x,
        spine_width=unit.spine_width * zoom,
        rib_spacing=unit.rib_spacing * zoom,
        rib_phase=unit.rib_phase,
        rib_curve=unit.rib_curve / zoom,
        clavicles=tuple((*point(x0, y0), *point(x1, y1)) for x0, y0, x1, y1 in unit.clavicles),
        clavicle_width=unit.clavicle_width * zoom,
    )


_Planned = tuple[tuple[Mark, ...], tuple[dict[str, Any], ...]]  # what to draw, its ROIs
_Planner = Callable[[Anatomy, np.random.Generator, int], _Planned]


def _plan_findings(
    params: SynthParams, anatomy: Anatomy, rng: np.random.Generator
) -> tuple[Finding, ...]:
    # Presence and shape are drawn for every finding whether present or not, in a fixed order,
    # so raising one prevalence adds that finding without moving anything else in the image.
    presence = rng.random(len(FINDINGS))
    planners: dict[str, _Planner] = {
        "Opacity": _plan_opacity,
        "Device": _plan_device,
        "Effusion": _plan_effusion,
    }
    findings = []
    for name, u in zip(FINDINGS, presence, strict=True):
        marks, rois = planners[name](anatomy, rng, params.size)
        present = bool(u < params.prevalence[name])
        findings.append(Finding(name, present, marks if present else (), rois if present else ()))
    return tuple(findings)


def _plan_opacity(anatomy: Anatomy, rng: np.random.Generator, size: int) -> _Planned:
    count = 1 + int(rng.random() < 0.4)
    marks, rois = [], []
    for _ in range(2):  # always draw two, keep `count`: the stream stays aligned
        lung = anatomy.lungs[int(rng.integers(2))]
        radius, angle = 0.55 * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
        sx = lung.ax * rng.uniform(0.18, 0.38)
        sy = sx * rng.uniform(0.75, 1.35)
        blob = Blob(
            cx=lung.cx + radius * lung.ax * np.cos(angle),
            cy=lung.cy + radius * lung.ay * np.sin(angle) * 0.85,
            sx=sx,
            sy=sy,
            amplitude=rng.uniform(0.14, 0.26),
        )
        marks.append(blob)
        box = _clip_box(blob.cx - 2 * sx, blob.cy - 2 * sy, blob.cx + 2 * sx, blob.cy + 2 * sy, size)
        rois.append(_roi("Opacity", "ellipse", box))
    return tuple(marks[:count]), tuple(rois[:count])


def _plan_device(anatomy: Anatomy, rng: np.random.Generator, size: int) -> _Planned:
    right_lung, _ = anatomy.lungs
    kind = rng.random()
    jitter = rng.normal(0, 0.015 * size, size=(3, 2))
    if kind < 0.6:
        # central venous line: enters at the patient's right shoulder (image left), runs medially
        # under the clavicle and down the superior vena cava to the right atrium.
        start = (right_lung.cx - 0.6 * right_lung.ax, right_lung.cy - 1.05 * right_lung.ay)
        control = (anatomy.spine_x - 0.25 * right_lung.ax, right_lung.cy - 0.9 * right_lung.ay)
        end = (anatomy.spine_x + 0.15 * right_lung.ax, anatomy.heart.cy - 0.6 * anatomy.heart.ay)
    else:
        # nasogastric tube: down the midline, bending to the patient's left below the diaphragm.
        start = (anatomy.spine_x, max(2.0, right_lung.cy - 1.6 * right_lung.ay))
        control = (anatomy.spine_x + 0.05 * size, right_lung.cy + 0.6 * right_lung.ay)
        end = (anatomy.spine_x + 0.35 * anatomy.body.ax, right_lung.cy + 1.25 * right_lung.ay)
    p = np.array([start, control, end]) + jitter
    t = np.linspace(0.0, 1.0, 13)[:, None]
    curve = (1 - t) ** 2 * p[0] + 2 * (1 - t) * t * p[1] + t**2 * p[2]  # quadratic Bezier
    curve = np.clip(curve, 1.0, size - 1.0)
    half_width = max(0.75, 0.005 * size)
    tube = Tube(
        points=tuple((float(x), float(y)) for x, y in curve),
        half_width=half_width,
        amplitude=rng.uniform(0.35, 0.5),
    )
    outline = _outline_polyline(curve, half_width + 1.0, size)
    return (tube,), (_roi("Device", "polygon", outline),)


def _plan_effusion(anatomy: Anatomy, rng: np.random.Generator, size: int) -> _Planned:
    lung = anatomy.lungs[int(rng.integers(2))]
    bottom = lung.cy + lung.ay
    top = bottom - lung.ay * rng.uniform(0.3, 0.55)
    margin = 0.2 * lung.ax  # the lung edge is soft: its tail (< 0.2% at this distance) stays inside
    box = _clip_box(lung.cx - lung.ax - margin, top, lung.cx + lung.ax + margin, bottom + margin, size)
    haze = Haze(lung=lung, top=top, bottom=bottom, box=tuple(box[0] + box[1]), amplitude=rng.uniform(0.2, 0.32))
    return (haze,), (_roi("Effusion", "rectangle", box),)


def _roi(label: str, shape: str, points: list[list[float]]) -> dict[str, Any]:
    return {"label": label, "shape": shape, "points": [[round(x, 2), round(y, 2)] for x, y in points]}


def _clip_box(x0: float, y0: float, x1: float, y1: float, size: int) -> list[list[float]]:
    return [[float(np.clip(x0, 0, size)), float(np.clip(y0, 0, size))],
            [float(np.clip(x1, 0, size)), float(np.clip(y1, 0, size))]]


def _outline_polyline(points: np.ndarray, offset: float, size: int) -> list[list[float]]:
    """Closed outline of a polyline thickened by ``offset``: one side forward, the other back."""
    tangents = np.gradient(points, axis=0)
    # points clipped onto the same image corner would give a zero tangent: no NaN in the ROI
    tangents /= np.maximum(np.linalg.norm(tangents, axis=1, keepdims=True), 1e-9)
    normals = np.stack([-tangents[:, 1], tangents[:, 0]], axis=1)
    # extend both ends along the tangent so the rounded tube caps stay inside
    ends = points.copy()
    ends[0] -= tangents[0] * offset
    ends[-1] += tangents[-1] * offset
    outline = np.concatenate([ends + normals * offset, (ends - normals * offset)[::-1]])
    return np.clip(outline, 0, size).tolist()


# --- drawing ---------------------------------------------------------------------------------


def render_image(plan: ImagePlan, *, findings: bool = True) -> np.ndarray:
    """The stored pixel values (uint16, ``size`` x ``size``) of a plan.

    ``findings=False`` renders the same image (same anatomy, same noise) without any finding:
    the difference between the two is exactly what the ground truth describes.
    """
    size = plan.size
    coords = np.arange(size, dtype=np.float32) + np.float32(0.5)
    x, y = coords[None, :], coords[:, None]  # broadcast to (size, size) only where needed
    noise_rng = np.random.default_rng(list(plan.noise_seed))
    image = _chest(plan.anatomy, x, y, _texture(noise_rng, size))
    if findings:
        for finding in plan.findings:
            if finding.present:
                for mark in finding.marks:
                    _draw(image, mark, x, y)
    image *= np.float32(plan.gain)
    noise = noise_rng.standard_normal((size, size), dtype=np.float32)
    image += noise * np.float32(plan.noise_sigma)
    # Headroom above 1.0: a device over the spine must not clip, so the ground truth stays visible.
    scale = np.float32(plan.max_value / 1.35)
    np.multiply(image, scale, out=image)
    np.clip(image, 0, plan.max_value, out=image)
    return np.rint(image).astype(np.uint16)


def _soft_inside(r: np.ndarray, edge: float) -> np.ndarray:
    """~1 inside r < 1, ~0 outside, with a smooth edge (width ~ ``edge`` in r units)."""
    return np.float32(0.5) + np.float32(0.5) * np.tanh((np.float32(1.0) - r) / np.float32(edge))


def _ellipse_r(e: Ellipse, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    dx = (x - np.float32(e.cx)) / np.float32(e.ax)
    dy = (y - np.float32(e.cy)) / np.float32(e.ay)
    return np.sqrt(dx * dx + dy * dy)


def _lung_field(e: Ellipse, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # Elliptic above the centre, squarer below (an L4 norm): the bases end in sharp
    # costophrenic angles, as in a real radiograph, instead of a round bottom.
    dx = (x - np.float32(e.cx)) / np.float32(e.ax)
    dy = (y - np.float32(e.cy)) / np.float32(e.ay)
    dx2, dy2 = dx * dx, dy * dy
    r = np.where(dy > 0, np.sqrt(np.sqrt(dx2 * dx2 + dy2 * dy2)), np.sqrt(dx2 + dy2))
    return _soft_inside(r, 0.06)


def _chest(a: Anatomy, x: np.ndarray, y: np.ndarray, texture: np.ndarray) -> np.ndarray:
    """Attenuation-like picture (about 0..1, brighter = denser) of a frontal chest.

    Organs with a soft edge are evaluated only inside a window where they are not ~0: at 256 px
    that halves the rendering time.
    """
    size = texture.shape[0]
    body = _soft_inside(_ellipse_r(a.body, x, y), 0.04)
    spine = np.exp(-0.5 * ((x - np.float32(a.spine_x)) / np.float32(a.spine_width)) ** 2)
    image = np.float32(0.04) + body * (
        np.float32(0.55)
        + np.float32(0.14) * spine
        + np.float32(0.06) * (y / np.float32(size))  # denser towards the diaphragm and abdomen
    )

    lungs = np.zeros_like(image)
    for lung in a.lungs:  # at 1.4 semi-axes the field is < 1e-5
        rows, cols = _window(lung.cx, lung.cy, 1.4 * lung.ax, 1.4 * lung.ay, size)
        lungs[rows, cols] += _lung_field(lung, x[:, cols], y[rows, :])
    image -= np.float32(0.36) * lungs
    # the heart lies in front of the medial lung bases: where it is, the lung is not seen
    rows, cols = _window(a.heart.cx, a.heart.cy, 2 * a.heart.ax, 2 * a.heart.ay, size)
    heart = _soft_inside(_ellipse_r(a.heart, x[:, cols], y[rows, :]), 0.15)
    image[rows, cols] += heart * (np.float32(0.36 * 0.85) * lungs[rows, cols] + np.float32(0.04) * body[rows, cols])

    lateral = x - np.float32(a.spine_x)
    phase = (y - np.float32(a.rib_curve) * lateral * lateral) / np.float32(a.rib_spacing) + np.float32(a.rib_phase)
    ribs = np.float32(0.5) + np.float32(0.5) * np.cos(np.float32(2 * np.pi) * phase)
    ribs *= ribs
    ribs *= ribs  # cos^4: thin bands rather than a sinusoid
    image += ribs * (np.float32(0.045) * lungs + np.float32(0.045 * 0.15) * body)
    image += np.float32(0.06) * lungs * texture  # vessels and interstitium: lungs are not flat

    reach = 4 * a.clavicle_width
    for x0, y0, x1, y1 in a.clavicles:
        rows, cols = _window((x0 + x1) / 2, (y0 + y1) / 2, abs(x1 - x0) / 2 + reach, abs(y1 - y0) / 2 + reach, size)
        band = _segment_band((x0, y0, x1, y1), a.clavicle_width, x[:, cols], y[rows, :])
        image[rows, cols] += np.float32(0.1) * band * body[rows, cols]
    return image


def _window(cx: float, cy: float, half_x: float, half_y: float, size: int) -> tuple[slice, slice]:
    """Rows and columns of the pixels within ``half_x``/``half_y`` of a centre, in the image."""
    c0, c1 = max(0, int(cx - half_x)), min(size, int(np.ceil(cx + half_x)) + 1)
    r0, r1 = max(0, int(cy - half_y)), min(size, int(np.ceil(cy + half_y)) + 1)
    return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))


def _segment_band(segment: tuple[float, float, float, float], width: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gaussian profile (sigma ``width``) across the segment, fading out past its ends."""
    x0, y0, x1, y1 = segment
    vx, vy = x1 - x0, y1 - y0
    length2 = vx * vx + vy * vy
    t = ((x - np.float32(x0)) * np.float32(vx) + (y - np.float32(y0)) * np.float32(vy)) / np.float32(length2)
    dx = x - np.float32(x0) - t * np.float32(vx)
    dy = y - np.float32(y0) - t * np.float32(vy)
    across = np.exp((dx * dx + dy * dy) * np.float32(-0.5 / width**2))
    # 1 along the middle of the segment, ramping to 0 over its last eighths
    along = np.clip(np.float32(1.0) - np.abs(t - np.float32(0.5)) * np.float32(2.0), 0, np.float32(0.25))
    along *= np.float32(4.0)
    return across * along


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random field (about -1..1): two octaves of bilinearly upsampled Gaussian noise."""
    field = np.zeros((size, size), dtype=np.float32)
    for cells, weight in ((6, 0.6), (18, 0.4)):
        grid = rng.standard_normal((cells + 1, cells + 1), dtype=np.float32)
        # Separable linear interpolation by indexing. Not `weights @ grid @ weights.T`: that is
        # BLAS, whose threads spin on these tiny products and double the CPU time of a run.
        u = (np.arange(size, dtype=np.float32) + np.float32(0.5)) * np.float32(cells / size)
        i = np.minimum(u.astype(np.intp), cells - 1)
        f = (u - i)[:, None]
        rows = grid[i] * (1 - f) + grid[i + 1] * f  # (size, cells + 1)
        f = f.T
        field += np.float32(weight) * (rows[:, i] * (1 - f) + rows[:, i + 1] * f)
    return field


def _draw(image: np.ndarray, mark: Mark, x: np.ndarray, y: np.ndarray) -> None:
    if isinstance(mark, Blob):
        gx = np.exp(-0.5 * ((x - np.float32(mark.cx)) / np.float32(mark.sx)) ** 2)
        gy = np.exp(-0.5 * ((y - np.float32(mark.cy)) / np.float32(mark.sy)) ** 2)
        image += np.float32(mark.amplitude) * (gy * gx)  # separable: two 1-D Gaussians
    elif isinstance(mark, Tube):
        _draw_tube(image, mark)
    else:
        _draw_haze(image, mark, x, y)


def _draw_tube(image: np.ndarray, tube: Tube) -> None:
    """Anti-aliased band around the polyline, computed only in its bounding box."""
    pts = np.asarray(tube.points, dtype=np.float32)
    reach = tube.half_width + 1.0
    size = image.shape[0]
    c0 = max(0, int(np.floor(pts[:, 0].min() - reach)))
    c1 = min(size, int(np.ceil(pts[:, 0].max() + reach)) + 1)
    r0 = max(0, int(np.floor(pts[:, 1].min() - reach)))
    r1 = min(size, int(np.ceil(pts[:, 1].max() + reach)) + 1)
    px = np.arange(c0, c1, dtype=np.float32)[None, :] + np.float32(0.5)
    py = np.arange(r0, r1, dtype=np.float32)[:, None] + np.float32(0.5)
    dist2 = np.full((r1 - r0, c1 - c0), np.inf, dtype=np.float32)
    for (ax, ay), (bx, by) in zip(pts[:-1], pts[1:], strict=True):
        vx, vy = bx - ax, by - ay
        t = ((px - ax) * vx + (py - ay) * vy) / max(float(vx * vx + vy * vy), 1e-6)
        np.clip(t, 0, 1, out=t)
        dx, dy = px - (ax + t * vx), py - (ay + t * vy)
        np.minimum(dist2, dx * dx + dy * dy, out=dist2)
    coverage = np.clip(np.float32(tube.half_width + 0.5) - np.sqrt(dist2), 0, 1)
    image[r0:r1, c0:c1] += np.float32(tube.amplitude) * coverage


def _draw_haze(image: np.ndarray, haze: Haze, x: np.ndarray, y: np.ndarray) -> None:
    x0, y0, x1, y1 = haze.box
    c0, c1 = int(np.floor(x0)), int(np.ceil(x1))
    r0, r1 = int(np.floor(y0)), int(np.ceil(y1))
    bx, by = x[:, c0:c1], y[r0:r1, :]
    rise = np.clip((by - np.float32(haze.top)) / np.float32(haze.bottom - haze.top), 0, 1) ** np.float32(0.7)
    lung = _lung_field(haze.lung, bx, by)
    # hard window on the ROI: nothing of the effusion is drawn outside its rectangle
    inside = (bx >= x0) & (bx <= x1) & (by >= y0) & (by <= y1)
    image[r0:r1, c0:c1] += np.float32(haze.amplitude) * rise * lung * inside


# --- DICOM -----------------------------------------------------------------------------------


def build_dataset(study: StudyInfo, pixels: np.ndarray, params: SynthParams) -> Dataset:
    """The DICOM dataset of one image (PS3.3 A.26 DX IOD, or A.2 CR IOD), file meta included."""
    patient = study.patient
    size = params.size
    is_dx = params.modality == "DX"
    sop_class = DigitalXRayImageStorageForPresentation if is_dx else ComputedRadiographyImageStorage
    imager_spacing = _DETECTOR_WIDTH_MM / size
    study_date = study.date.strftime("%Y%m%d")
    study_time = study.time.strftime("%H%M%S")
    age_years = (study.date - patient.birth_date).days // 365

    ds = Dataset()
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

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = study.sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # PS3.5 A.2
    return ds


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


# --- the dataset -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSummary:
    """What :func:`generate_dataset` wrote."""

    out_dir: Path
    params: SynthParams
    patients: int
    studies: int
    images: int
    present: dict[str, int]  # images with each finding
    rois: dict[str, int]  # ROIs of each finding
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The content of ``dataset.json`` (no timings: the file is deterministic too)."""
        return {
            "generator": "python -m devkit synth",
            "version": __version__,
            "parameters": self.params.to_dict(),
            "schema": SCHEMA_PATH,
            "label_names": list(FINDINGS),
            "roi_shapes": dict(ROI_SHAPES),
            "layout": "<PatientID>/<StudyInstanceUID>/<SOPInstanceUID>.dcm",
            "ground_truth": GROUND_TRUTH_FILE,
            "counts": {
                "patients": self.patients,
                "studies": self.studies,
                "series": self.studies,
                "images": self.images,
            },
            "labels": {
                name: {
                    "present": self.present[name],
                    "absent": self.images - self.present[name],
                    "rois": self.rois[name],
                    "observed_prevalence": round(self.present[name] / self.images, 4),
                }
                for name in FINDINGS
            },
        }


def iter_studies(params: SynthParams) -> Iterator[StudyInfo]:
    """Every study of the dataset, in (patient, study) order."""
    for p in range(params.patients):
        patient = plan_patient(params, p)
        for k in range(patient.studies):
            yield plan_study(params, patient, k)


def write_image(params: SynthParams, root: Path, job: tuple[int, int]) -> dict[str, Any]:
    """Render and write image (patient, study) under ``root``; return its ground-truth record.

    Self-contained (plans from indices) so worker processes need nothing but the parameters.
    """
    patient_index, study_index = job
    study = plan_study(params, plan_patient(params, patient_index), study_index)
    pixels = render_image(study.plan)
    path = root / study.relative_path
    path.parent.mkdir(parents=True, exist_ok=True)
    build_dataset(study, pixels, params).save_as(path, enforce_file_format=True)
    return ground_truth_record(study)


def default_workers() -> int:
    """One worker per CPU this process may use, at most 8 (writing files does not scale further)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def generate_dataset(
    out_dir: str | Path,
    *,
    patients: int = 20,
    studies_per_patient: int | tuple[int, int] = 2,
    size: int = 256,
    seed: int = 0,
    prevalence: float | Mapping[str, float] = DEFAULT_PREVALENCE,
    modality: str = "DX",
    bits_stored: int = 12,
    force: bool = False,
    progress: bool = True,
    workers: int | None = None,
) -> DatasetSummary:
    """Write the synthetic dataset into ``out_dir`` and return its summary.

    ``studies_per_patient`` is an exact count or an inclusive ``(min, max)`` range drawn per
    patient; ``prevalence`` is one probability for every finding or a ``{finding: p}`` mapping
    (unnamed findings keep the default). ``workers`` processes render in parallel (default
    :func:`default_workers`; 1 = in this process); the output does not depend on it.
    Raises ValueError (``OutputDirError`` for ``out_dir``) with a message naming the bad input;
    nothing is left in ``out_dir`` on failure.
    """
    started = time.perf_counter()
    params = make_params(
        patients=patients,
        studies_per_patient=studies_per_patient,
        size=size,
        seed=seed,
        prevalence=prevalence,
        modality=modality,
        bits_stored=bits_stored,
    )
    workers = default_workers() if workers is None else workers
    _check_int("workers", workers, 1, 256)
    jobs = [(p, k) for p in range(params.patients) for k in range(plan_patient(params, p).studies)]
    present = dict.fromkeys(FINDINGS, 0)
    rois = dict.fromkeys(FINDINGS, 0)
    with staged_output_dir(out_dir, force=force) as staging:
        with _records(params, staging, jobs, workers) as records, _progress(progress, len(jobs)) as advance:
            with open(staging / GROUND_TRUTH_FILE, "w", encoding="utf-8") as truth:
                for record in records:  # in job order, whatever the number of workers
                    truth.write(json.dumps(record, separators=(",", ":")) + "\n")
                    for label in record["labels"]:
                        present[label["name"]] += label["present"]
                    for roi in record["rois"]:
                        rois[roi["label"]] += 1
                    advance()
        summary = DatasetSummary(
            out_dir=Path(out_dir),
            params=params,
            patients=params.patients,
            studies=len(jobs),
            images=len(jobs),
            present=present,
            rois=rois,
            seconds=0.0,
        )
        (staging / SUMMARY_FILE).write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    return dataclasses.replace(summary, seconds=time.perf_counter() - started)


@contextmanager
def _records(
    params: SynthParams, root: Path, jobs: list[tuple[int, int]], workers: int
) -> Iterator[Iterator[dict[str, Any]]]:
    """Ground-truth records of ``jobs`` in order, written by this process or a process pool."""
    write = functools.partial(write_image, params, root)
    if workers == 1 or len(jobs) < 2 * workers:  # a pool costs more than it saves on a few images
        yield map(write, jobs)
        return
    # fork where there is one: workers inherit the imported modules instead of re-importing them;
    # the pool is created before any progress-bar thread exists, so forking is safe.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context)
    try:
        yield pool.map(write, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers))))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[], None]]:
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("synth", total=total)
        yield lambda: bar.advance(task)


# --- CLI -------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``synth`` to the ``python -m labeling`` command line (see labeling/cli.py)."""
    from devkit import synth_series  # it imports this module: only once this one is loaded

    parser = subparsers.add_parser(
        "synth",
        description=(
            "Generate synthetic frontal chest radiographs (DX or CR, 16-bit MONOCHROME2, Explicit "
            "VR Little Endian) for patients with one or more studies, with the findings "
            f"{', '.join(FINDINGS)} drawn at the given prevalences. Files go to "
            "OUT/<PatientID>/<StudyUID>/<SOPUID>.dcm; the ground truth (label shape of "
            f"docs/architecture.md) to OUT/{GROUND_TRUTH_FILE}, a summary to OUT/{SUMMARY_FILE}. "
            "The same options give the same files and UIDs."
        ),
    )
    parser.add_argument(
        "--out", required=True, type=Path, metavar="DIR",
        help="output directory (created; must be empty unless --force)",
    )
    parser.add_argument(
        "--patients", type=_int_in(1, MAX_PATIENTS), default=20, metavar="N",
        help="number of patients (default 20)",
    )
    parser.add_argument(
        "--studies-per-patient", type=_studies_range, default=(2, 2), metavar="N|MIN-MAX",
        help="studies per patient, exact or a range drawn per patient (default 2)",
    )
    parser.add_argument(
        "--size", type=_int_in(MIN_SIZE, MAX_SIZE), default=None, metavar="PX",
        help=f"pixels per side, {MIN_SIZE}..{MAX_SIZE} (default 256; with --series at most "
        f"{synth_series.MAX_SERIES_SIZE}, default {synth_series.DEFAULT_SERIES_SIZE})",
    )
    parser.add_argument(
        "--seed", type=_int_in(0, 2**63 - 1), default=0,
        help="random seed; same seed, same files and UIDs (default 0)",
    )
    parser.add_argument(
        "--prevalence", type=_prevalence_arg, action="append", default=[], metavar="P|NAME=P",
        help=f"probability of a finding per image: P for all, or NAME=P for one of {', '.join(FINDINGS)}; "
        f"repeatable (default {DEFAULT_PREVALENCE} each)",
    )
    parser.add_argument("--modality", type=str.upper, choices=MODALITIES, default="DX", help="DX (default) or CR")
    parser.add_argument(
        "--bits-stored", type=int, choices=BITS_STORED_CHOICES, default=12,
        help="BitsStored, 12 (default) or 14",
    )
    parser.add_argument(
        "--workers", type=_int_in(1, 256), default=None, metavar="N",
        help=f"processes rendering in parallel (default: CPUs, at most 8; here {default_workers()}); same output",
    )
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out directory")
    add_progress_argument(parser)
    ct = parser.add_argument_group("CT series instead of radiographs (devkit/synth_series.py; uses --out, "
                                   "--size, --seed, --force and one unnamed --prevalence P for nodules)")
    ct.add_argument("--series", type=_int_in(1, synth_series.MAX_SERIES), metavar="N",
                    help="write N CT-like chest series with nodules, plus one multi-frame (Enhanced CT) instance")
    ct.add_argument("--slices", type=_int_in(synth_series.MIN_SLICES, synth_series.MAX_SLICES),
                    default=synth_series.DEFAULT_SLICES, metavar="K",
                    help=f"slices per series (default {synth_series.DEFAULT_SLICES})")
    parser.set_defaults(func=run)
    one_line_errors(parser)


def run(args: argparse.Namespace) -> int:
    """The ``synth`` command: returns 0, or 2 with one error line on stderr for bad input."""
    with sigterm_as_interrupt():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return _run_series(args) if args.series is not None else _run_chest(args)
    except OutputDirError as exc:
        print(f"synth: error: --out {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"synth: error: {exc}", file=sys.stderr)
        return 2


def _run_chest(args: argparse.Namespace) -> int:
    prevalence: dict[str, float] = {}
    for name, value in args.prevalence:
        if name is None:
            prevalence.update(dict.fromkeys(FINDINGS, value))
        else:
            prevalence[name] = value
    summary = generate_dataset(
        args.out,
        patients=args.patients,
        studies_per_patient=args.studies_per_patient,
        size=256 if args.size is None else args.size,
        seed=args.seed,
        prevalence=prevalence or DEFAULT_PREVALENCE,
        modality=args.modality,
        bits_stored=args.bits_stored,
        force=args.force,
        progress=args.progress,
        workers=args.workers,
    )
    _print_summary(summary)
    return 0


def _run_series(args: argparse.Namespace) -> int:
    from devkit import synth_series

    if any(name is not None for name, _ in args.prevalence):
        raise ValueError("--prevalence: with --series give one probability P (for nodules), not NAME=P")
    summary = synth_series.generate_series_dataset(
        args.out, series=args.series, slices=args.slices,
        size=synth_series.DEFAULT_SERIES_SIZE if args.size is None else args.size, seed=args.seed,
        prevalence=args.prevalence[-1][1] if args.prevalence else synth_series.DEFAULT_NODULE_PREVALENCE,
        force=args.force, progress=args.progress)
    print(f"{summary.series} series ({summary.images} images, {summary.multiframe} multi-frame) with "
          f"{summary.nodules} nodules in {summary.out_dir}; ground truth: {summary.out_dir / GROUND_TRUTH_FILE} "
          f"({summary.seconds:.1f} s)")
    return 0


def _print_summary(summary: DatasetSummary) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{summary.images} images, {summary.patients} patients, {summary.studies} studies in {summary.out_dir}"
    )
    table.add_column("finding")
    table.add_column("present", justify="right")
    table.add_column("prevalence", justify="right")
    table.add_column("ROIs", justify="right")
    table.add_column("ROI shape")
    for name in FINDINGS:
        n = summary.present[name]
        asked = summary.params.prevalence[name]
        prevalence = f"{n / summary.images:.2f} (asked {asked:.2f})"
        table.add_row(name, str(n), prevalence, str(summary.rois[name]), ROI_SHAPES[name])
    console = Console()
    console.print(table)
    console.print(f"ground truth: {summary.out_dir / GROUND_TRUTH_FILE}  ({summary.seconds:.1f} s)")


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def _studies_range(text: str) -> tuple[int, int]:
    parse = _int_in(1, MAX_STUDIES_PER_PATIENT)
    low_text, sep, high_text = text.partition("-")
    low = parse(low_text)
    high = parse(high_text) if sep else low
    if low > high:
        raise argparse.ArgumentTypeError(f"range {text!r} is empty (minimum > maximum)")
    return low, high


def _prevalence_arg(text: str) -> tuple[str | None, float]:
    name, sep, value_text = text.rpartition("=")
    canonical: str | None = None
    if sep:
        matches = [f for f in FINDINGS if f.casefold() == name.strip().casefold()]
        if not matches:
            raise argparse.ArgumentTypeError(
                f"unknown finding {name!r} in {text!r}; expected one of {', '.join(FINDINGS)}"
            )
        canonical = matches[0]
    try:
        value = float(value_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: probability must be a number between 0 and 1") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: probability must be between 0 and 1")
    return canonical, value
