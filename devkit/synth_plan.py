"""What ``python -m devkit synth`` draws, decided before any pixel: the parameters, then for each
patient and study a plan (anatomy, findings, their ROIs), all drawn from generators seeded by
(seed, patient, study). The dataset and its determinism are described in :mod:`devkit.synth`."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from pydicom.uid import generate_uid


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
