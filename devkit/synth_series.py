"""Synthetic CT-like series with "nodules" of known position and size (``synth --series N``).

What it makes: ``series`` patients, each with one chest CT study holding one axial series of
``slices`` single-frame CT images (PS3.3 A.3 "CT Image IOD", SOP class CT Image Storage), and —
for the first patient (``multiframe_from="first"``), or the first whose series has a nodule
(``"nodule"``: its ground truth then has ROIs on frames; the first patient when none has), in the same
study — one **multi-frame** instance of the same volume (SOP
class Enhanced CT Image Storage, PS3.3 A.38: NumberOfFrames, Shared and Per-frame Functional Groups
with Pixel Measures, Plane Orientation, Plane Position, Pixel Value Transformation, Frame Content
and CT Image Frame Type, a Multi-frame Dimension module; the CT acquisition/reconstruction macros an
Enhanced CT IOD also requires are left out: it is a test object for geometry and frame references,
not a scanner's output).

Geometry (PS3.3 C.7.6.2): axial slices, ImageOrientationPatient ``1\\0\\0\\0\\1\\0``, square
pixels of ``FOV_MM / size`` mm, slice centres ``SLICE_SPACING_MM`` apart (SliceThickness the same),
ImagePositionPatient = the centre of the first voxel, z *decreasing* with InstanceNumber (head to
feet, as scanners number axial slices; :mod:`labeling.dicom.series` orders by increasing z, so the
manifest's order is the reverse of InstanceNumber). One StudyInstanceUID, SeriesInstanceUID and
FrameOfReferenceUID per series (the multi-frame instance shares its study's frame of reference:
same patient, same position).

Values are Hounsfield-like: air -1000, lungs about -850, soft tissue 40, bone 700, with Gaussian
noise (sigma 15 HU), stored unsigned as HU + 1024 in 12 of 16 bits, RescaleIntercept -1024,
RescaleSlope 1, RescaleType HU (PS3.3 C.11.1.1.2). Window: lung (-600 / 1500).

"Nodules" are balls of soft tissue (40 HU, anti-aliased edge) inside a lung, radius
``NODULE_RADIUS_MM``; a series has 1–3 of them with probability ``prevalence``. Ground truth
(``ground_truth.jsonl``, one line per task: the series, then the multi-frame instance) has the
label shape of docs/architecture.md with the ROI ``instance``/``frame`` of series tasks, plus identifiers:

* ``source``: the task's manifest ``source`` (the Orthanc series ID, or the multi-frame
  instance's Orthanc ID; Orthanc Book, "Orthanc identifiers"), ``level``, ``instances`` (Orthanc
  instance IDs in InstanceNumber order), ``sop_instance_uids``, study/series UIDs, ``patient_id``;
* ``labels``: ``[{"name": "Nodule", "present"}]``, a series-level label;
* ``rois``: one ``ellipse`` (a circle) per nodule per slice whose cross-section radius is at least
  half a pixel, with ``instance`` (Orthanc instance ID), ``frame`` (0-based; 0 for a single-frame
  slice), ``sop_instance_uid`` and ``nodule`` (index into ``nodules``); points are image pixels as
  in synth (pixel (c, r) has its centre at (c + 0.5, r + 0.5));
* ``nodules``: centre (patient mm) and radius (mm) of each ball.

Determinism: draws from NumPy generators seeded by (seed, series index), UIDs as in
:mod:`devkit.synth` from the parameters that change content; the same options give the same
files and UIDs.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, EnhancedCTImageStorage, ExplicitVRLittleEndian

from labeling import __version__
from labeling.outdir import staged_output_dir
from devkit.synth import (
    GROUND_TRUTH_FILE,
    MANUFACTURER,
    SUMMARY_FILE,
    _check_int,
    _check_probability,
    _progress,
    _uid,
    make_params,
    plan_patient,
)
from labeling.orthanc.upload import orthanc_hash, orthanc_instance_id

FINDING: Final = "Nodule"
SCHEMA_PATH: Final = "schemas/ct-nodule.yaml"
FOV_MM: Final = 320.0
SLICE_SPACING_MM: Final = 3.0
NODULE_RADIUS_MM: Final = (8.0, 18.0)
MIN_SLICES: Final = 8
MAX_SLICES: Final = 512
MIN_SERIES_SIZE: Final = 64
MAX_SERIES_SIZE: Final = 512
MAX_SERIES: Final = 1000
DEFAULT_SLICES: Final = 40
DEFAULT_SERIES_SIZE: Final = 96
DEFAULT_NODULE_PREVALENCE: Final = 0.7
HU_OFFSET: Final = 1024
AXIAL: Final = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
_NOISE_HU: Final = 15.0
MULTIFRAME_SOURCES: Final = ("first", "nodule")  # which series the multi-frame instance copies


@dataclass(frozen=True)
class SeriesParams:
    """Validated parameters (see :func:`make_series_params`)."""

    series: int = 2
    slices: int = DEFAULT_SLICES
    size: int = DEFAULT_SERIES_SIZE
    seed: int = 0
    prevalence: float = DEFAULT_NODULE_PREVALENCE
    multiframe: bool = True
    multiframe_from: str = "first"  # one of MULTIFRAME_SOURCES

    def content_key(self) -> str:
        """What changes a series' content: the UIDs' entropy source (the count of series is not)."""
        return json.dumps({"generator": "dicom-annotate synth series v1", "seed": self.seed,
                           "slices": self.slices, "size": self.size, "prevalence": self.prevalence},
                          sort_keys=True)

    @property
    def pixel_spacing(self) -> float:
        return FOV_MM / self.size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def make_series_params(*, series: int = 2, slices: int = DEFAULT_SLICES, size: int = DEFAULT_SERIES_SIZE,
                       seed: int = 0, prevalence: float = DEFAULT_NODULE_PREVALENCE,
                       multiframe: bool = True, multiframe_from: str = "first") -> SeriesParams:
    """Check the parameters; ValueError names the parameter and the problem."""
    _check_int("series", series, 1, MAX_SERIES)
    if multiframe_from not in MULTIFRAME_SOURCES:
        raise ValueError(f"multiframe_from: must be one of {', '.join(MULTIFRAME_SOURCES)}, got {multiframe_from!r}")
    _check_int("slices", slices, MIN_SLICES, MAX_SLICES)
    _check_int("size", size, MIN_SERIES_SIZE, MAX_SERIES_SIZE)
    _check_int("seed", seed, 0, 2**63 - 1)
    return SeriesParams(series=series, slices=slices, size=size, seed=seed,
                        prevalence=_check_probability("prevalence", prevalence), multiframe=bool(multiframe),
                        multiframe_from=multiframe_from)


@dataclass(frozen=True)
class Nodule:
    """A ball in patient coordinates (mm)."""

    x: float
    y: float
    z: float
    radius: float

    def to_dict(self) -> dict[str, Any]:
        return {"center_mm": [round(self.x, 3), round(self.y, 3), round(self.z, 3)], "radius_mm": round(self.radius, 3)}


@dataclass(frozen=True)
class Lung:
    """An ellipsoid of air-filled lung (centre and semi-axes, mm)."""

    x: float
    y: float
    z: float
    ax: float
    ay: float
    az: float


@dataclass(frozen=True)
class SeriesPlan:
    index: int
    patient_id: str
    patient_name: str
    sex: str
    birth_date: str
    study_date: str
    study_uid: str
    series_uid: str
    multiframe_series_uid: str
    frame_of_reference_uid: str
    sop_uids: tuple[str, ...]
    multiframe_uid: str
    origin_xy: float          # x and y of the first voxel's centre (mm)
    z_top: float              # z of slice 1 (InstanceNumber 1)
    lungs: tuple[Lung, Lung]
    nodules: tuple[Nodule, ...]

    def slice_z(self, k: int) -> float:
        """z (mm) of the slice with InstanceNumber k + 1."""
        return self.z_top - k * SLICE_SPACING_MM


def plan_series(params: SeriesParams, index: int) -> SeriesPlan:
    """Patient, UIDs, anatomy and nodules of series ``index``."""
    rng = np.random.default_rng([params.seed, 11, index])
    patient = plan_patient(make_params(seed=params.seed), index)  # synth's demographics
    half = FOV_MM / 2
    origin = -half + params.pixel_spacing / 2
    z_top = float(rng.uniform(-40, 40))
    depth = (params.slices - 1) * SLICE_SPACING_MM
    z_mid = z_top - depth / 2
    spread = rng.uniform(0.19, 0.23) * FOV_MM
    lungs = tuple(Lung(side * spread, rng.uniform(-0.03, 0.01) * FOV_MM, z_mid + rng.uniform(-5, 5),
                       rng.uniform(0.13, 0.16) * FOV_MM, rng.uniform(0.2, 0.24) * FOV_MM,
                       max(depth * 0.62, 30.0)) for side in (-1, 1))
    nodules: list[Nodule] = []
    if rng.random() < params.prevalence:
        wanted = int(rng.integers(1, 4))
        for _ in range(200):  # rejection sampling: inside a lung, apart from each other
            if len(nodules) == wanted:
                break
            lung = lungs[int(rng.integers(2))]
            radius = float(rng.uniform(*NODULE_RADIUS_MM))
            u = rng.uniform(-1, 1, size=3)
            if float(u @ u) > 1:
                continue
            x, y = lung.x + u[0] * (lung.ax - radius) * 0.8, lung.y + u[1] * (lung.ay - radius) * 0.8
            z = z_mid + u[2] * max(depth / 2 - radius, 0.0) * 0.8
            if all((x - n.x) ** 2 + (y - n.y) ** 2 + (z - n.z) ** 2 > (radius + n.radius + 5) ** 2 for n in nodules):
                nodules.append(Nodule(x, y, z, radius))
    first_study = patient.first_study.strftime("%Y%m%d")
    return SeriesPlan(
        index=index,
        # its own prefix: a CT patient never merges with synth's chest patients in Orthanc
        patient_id=f"SYNCT{params.seed}-{index + 1:05d}",
        patient_name=patient.name,
        sex=patient.sex,
        birth_date=patient.birth_date.strftime("%Y%m%d"),
        study_date=first_study,
        study_uid=_uid(params, "ct-study", index),
        series_uid=_uid(params, "ct-series", index),
        multiframe_series_uid=_uid(params, "ct-mf-series", index),
        frame_of_reference_uid=_uid(params, "ct-frame-of-reference", index),
        sop_uids=tuple(_uid(params, "ct-sop", index, k) for k in range(params.slices)),
        multiframe_uid=_uid(params, "ct-mf-sop", index),
        origin_xy=origin,
        z_top=z_top,
        lungs=lungs,  # type: ignore[arg-type]
        nodules=tuple(nodules),
    )


def multiframe_source(params: SeriesParams) -> int | None:
    """The index of the series the multi-frame instance copies (module docstring); None without one."""
    if not params.multiframe:
        return None
    if params.multiframe_from == "nodule":
        return next((i for i in range(params.series) if plan_series(params, i).nodules), 0)
    return 0


def render_slice(plan: SeriesPlan, params: SeriesParams, k: int) -> np.ndarray:
    """HU image (float32, rows x columns) of slice ``k`` (InstanceNumber k + 1)."""
    z = plan.slice_z(k)
    coords = plan.origin_xy + np.arange(params.size, dtype=np.float32) * np.float32(params.pixel_spacing)
    x, y = coords[None, :], coords[:, None]  # columns run to +x, rows to +y (IOP 1\0\0\0\1\0)
    ps = params.pixel_spacing
    edge = np.float32(ps / 2)

    def inside(distance: np.ndarray) -> np.ndarray:  # ~1 inside (distance < 0), smooth over a pixel
        return np.clip(np.float32(0.5) - distance / (2 * edge), 0, 1)

    body_r = np.sqrt((x / (0.44 * FOV_MM)) ** 2 + ((y - 0.02 * FOV_MM) / (0.32 * FOV_MM)) ** 2)
    image = np.full((params.size, params.size), -1000.0, dtype=np.float32)
    image += 1040.0 * inside((body_r - 1) * np.float32(0.3 * FOV_MM))
    for lung in plan.lungs:
        dz = (z - lung.z) / lung.az
        if abs(dz) >= 1:
            continue
        scale = np.sqrt(1 - dz * dz)
        r = np.sqrt(((x - lung.x) / (lung.ax * scale)) ** 2 + ((y - lung.y) / (lung.ay * scale)) ** 2)
        image -= 890.0 * inside((r - 1) * np.float32(lung.ax * scale))
    spine = np.sqrt(x ** 2 + (y - 0.2 * FOV_MM) ** 2) - 0.045 * FOV_MM
    image += 660.0 * inside(spine)
    for nodule in plan.nodules:
        dz = z - nodule.z
        if abs(dz) >= nodule.radius:
            continue
        rho = np.sqrt(nodule.radius ** 2 - dz ** 2)
        d = np.sqrt((x - nodule.x) ** 2 + (y - nodule.y) ** 2) - rho
        image += (np.float32(40.0) - image) * inside(d)  # soft tissue replaces the lung
    noise = np.random.default_rng([params.seed, 12, plan.index, k]).normal(0, _NOISE_HU, image.shape)
    return image + noise.astype(np.float32)


def stored(hu: np.ndarray) -> np.ndarray:
    """HU -> stored values (HU + 1024, 12 bits)."""
    return np.clip(np.rint(hu + HU_OFFSET), 0, 4095).astype("<u2")


def _common_tags(ds: Dataset, plan: SeriesPlan, params: SeriesParams) -> None:
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.InstanceCreationDate = plan.study_date
    ds.PatientName = plan.patient_name
    ds.PatientID = plan.patient_id
    ds.PatientBirthDate = plan.birth_date
    ds.PatientSex = plan.sex
    ds.StudyInstanceUID = plan.study_uid
    ds.StudyDate = plan.study_date
    ds.StudyTime = "100000"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = f"SYNCT{plan.index + 1:07d}"[:16]
    ds.StudyDescription = "CT CHEST"
    ds.Modality = "CT"
    ds.SeriesDate = plan.study_date
    ds.SeriesTime = "100000"
    ds.BodyPartExamined = "CHEST"
    ds.PatientPosition = "HFS"
    ds.FrameOfReferenceUID = plan.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "synthetic chest CT"
    ds.SoftwareVersions = __version__
    ds.ContentDate = plan.study_date
    ds.ContentTime = "100000"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = params.size
    ds.Columns = params.size
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.BurnedInAnnotation = "NO"
    ds.KVP = "120"


def _file_meta(ds: Dataset) -> None:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian


def _ds(value: float) -> str:
    return f"{value:.6g}"


def build_slice(plan: SeriesPlan, params: SeriesParams, k: int, pixels: np.ndarray) -> Dataset:
    """Slice ``k`` as a CT Image (PS3.3 A.3), file meta included."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = plan.sop_uids[k]
    _common_tags(ds, plan, params)
    ds.SeriesInstanceUID = plan.series_uid
    ds.SeriesNumber = 2
    ds.SeriesDescription = "Chest axial 3 mm"
    ds.InstanceNumber = k + 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.AcquisitionNumber = 1
    # Image Plane (C.7.6.2)
    ds.ImagePositionPatient = [_ds(plan.origin_xy), _ds(plan.origin_xy), _ds(plan.slice_z(k))]
    ds.ImageOrientationPatient = [_ds(v) for v in AXIAL]
    ds.PixelSpacing = [_ds(params.pixel_spacing)] * 2
    ds.SliceThickness = _ds(SLICE_SPACING_MM)
    ds.SliceLocation = _ds(plan.slice_z(k))
    # CT Image (C.8.2.1) and Modality LUT
    ds.RescaleIntercept = str(-HU_OFFSET)
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter = "-600"
    ds.WindowWidth = "1500"
    ds.PixelData = pixels.tobytes()
    _file_meta(ds)
    return ds


def _item(**attributes: Any) -> Dataset:
    item = Dataset()
    for key, value in attributes.items():
        setattr(item, key, value)
    return item


def build_multiframe(plan: SeriesPlan, params: SeriesParams, frames: list[np.ndarray]) -> Dataset:
    """The volume as one Enhanced CT instance (frames in InstanceNumber order: head to feet)."""
    ds = Dataset()
    ds.SOPClassUID = EnhancedCTImageStorage
    ds.SOPInstanceUID = plan.multiframe_uid
    _common_tags(ds, plan, params)
    ds.SeriesInstanceUID = plan.multiframe_series_uid
    ds.SeriesNumber = 3
    ds.SeriesDescription = "Chest axial 3 mm (enhanced, multi-frame)"
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.AcquisitionNumber = 1
    ds.AcquisitionDateTime = plan.study_date + "100000"
    ds.ContentQualification = "RESEARCH"
    ds.NumberOfFrames = len(frames)
    dimension = Dataset()
    dimension.DimensionOrganizationUID = _uid(params, "ct-mf-dimension", plan.index)
    ds.DimensionOrganizationSequence = Sequence([dimension])
    ds.DimensionOrganizationType = "3D"
    # one dimension: the position along the stack (In-Stack Position Number, 0020,9057)
    ds.DimensionIndexSequence = Sequence([_item(
        DimensionOrganizationUID=dimension.DimensionOrganizationUID,
        DimensionIndexPointer=0x00209057, FunctionalGroupPointer=0x00209111)])
    ds.SharedFunctionalGroupsSequence = Sequence([_item(
        PixelMeasuresSequence=Sequence([_item(PixelSpacing=[_ds(params.pixel_spacing)] * 2,
                                              SliceThickness=_ds(SLICE_SPACING_MM))]),
        PlaneOrientationSequence=Sequence([_item(ImageOrientationPatient=[_ds(v) for v in AXIAL])]),
        PixelValueTransformationSequence=Sequence([_item(RescaleIntercept=str(-HU_OFFSET), RescaleSlope="1",
                                                         RescaleType="HU")]),
        FrameVOILUTSequence=Sequence([_item(WindowCenter="-600", WindowWidth="1500")]),
    )])
    ds.PerFrameFunctionalGroupsSequence = Sequence([_item(
        FrameContentSequence=Sequence([_item(StackID="1", InStackPositionNumber=k + 1,
                                             DimensionIndexValues=[k + 1])]),
        PlanePositionSequence=Sequence([_item(
            ImagePositionPatient=[_ds(plan.origin_xy), _ds(plan.origin_xy), _ds(plan.slice_z(k))])]),
        CTImageFrameTypeSequence=Sequence([_item(FrameType=["ORIGINAL", "PRIMARY", "AXIAL", "NONE"],
                                                 PixelPresentation="MONOCHROME", VolumetricProperties="VOLUME",
                                                 VolumeBasedCalculationTechnique="NONE")]),
    ) for k in range(len(frames))])
    ds.PixelData = np.stack(frames).tobytes()
    _file_meta(ds)
    return ds


def slice_rois(plan: SeriesPlan, params: SeriesParams, *, instance_ids: list[str], frame_of: list[int],
               sop_uids: list[str]) -> list[dict]:
    """Ground-truth circles: one ``ellipse`` per nodule per slice (radius >= half a pixel).

    ``instance_ids[k]``/``frame_of[k]``/``sop_uids[k]``: where slice ``k`` (InstanceNumber k + 1) lives.
    """
    ps = params.pixel_spacing
    rois: list[dict] = []
    for k in range(params.slices):
        for number, nodule in enumerate(plan.nodules):
            d = plan.slice_z(k) - nodule.z
            if abs(d) >= nodule.radius:
                continue
            rho = float(np.sqrt(nodule.radius ** 2 - d ** 2)) / ps
            if rho < 0.5:
                continue
            cx = (nodule.x - plan.origin_xy) / ps + 0.5
            cy = (nodule.y - plan.origin_xy) / ps + 0.5
            rois.append({"label": FINDING, "shape": "ellipse",
                         "points": [[round(cx - rho, 3), round(cy - rho, 3)], [round(cx + rho, 3), round(cy + rho, 3)]],
                         "instance": instance_ids[k], "frame": frame_of[k], "sop_instance_uid": sop_uids[k],
                         "nodule": number})
    return rois


def _truth(plan: SeriesPlan, params: SeriesParams, *, multiframe: bool) -> dict[str, Any]:
    if multiframe:
        series_uid, sops = plan.multiframe_series_uid, [plan.multiframe_uid]
        ids = [orthanc_instance_id(plan.patient_id, plan.study_uid, series_uid, plan.multiframe_uid)]
        where = (ids * params.slices, list(range(params.slices)), sops * params.slices)
    else:
        series_uid, sops = plan.series_uid, list(plan.sop_uids)
        ids = [orthanc_instance_id(plan.patient_id, plan.study_uid, series_uid, uid) for uid in sops]
        where = (ids, [0] * params.slices, sops)
    return {
        # the task's manifest source: the Orthanc series ID ("Orthanc identifiers") or the instance ID
        "source": ids[0] if multiframe else orthanc_hash(f"{plan.patient_id}|{plan.study_uid}|{series_uid}"),
        "level": "multiframe" if multiframe else "series",
        "patient_id": plan.patient_id,
        "study_instance_uid": plan.study_uid,
        "series_instance_uid": series_uid,
        "sop_instance_uids": sops,
        "instances": ids,  # in InstanceNumber order (head to feet)
        "labels": [{"name": FINDING, "present": bool(plan.nodules)}],
        "rois": slice_rois(plan, params, instance_ids=where[0], frame_of=where[1], sop_uids=where[2]),
        "nodules": [n.to_dict() for n in plan.nodules],
        "image": {"rows": params.size, "columns": params.size, "frames": params.slices},
    }


@dataclass(frozen=True)
class SeriesSummary:
    out_dir: Path
    params: SeriesParams
    series: int
    multiframe: int
    images: int
    with_nodules: int
    nodules: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"generator": "python -m devkit synth --series", "version": __version__,
                "parameters": self.params.to_dict(), "schema": SCHEMA_PATH, "label_names": [FINDING],
                "roi_shapes": {FINDING: "ellipse"},
                "layout": "<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm",
                "ground_truth": GROUND_TRUTH_FILE,
                "counts": {"series": self.series, "multiframe_instances": self.multiframe,
                           "images": self.images, "series_with_nodules": self.with_nodules,
                           "nodules": self.nodules}}


def _save(root: Path, ds: Dataset) -> None:
    """Write ``ds`` as ``<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``."""
    path = root / str(ds.PatientID) / str(ds.StudyInstanceUID) / str(ds.SeriesInstanceUID) / f"{ds.SOPInstanceUID}.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def generate_series_dataset(out_dir: str | Path, *, series: int = 2, slices: int = DEFAULT_SLICES,
                            size: int = DEFAULT_SERIES_SIZE, seed: int = 0,
                            prevalence: float = DEFAULT_NODULE_PREVALENCE, multiframe: bool = True,
                            multiframe_from: str = "first", force: bool = False, progress: bool = True) -> SeriesSummary:
    """Write the CT series (and the multi-frame instance) into ``out_dir``; nothing is left there on
    failure (a staged directory, as synth). ValueError names a bad parameter."""
    started = time.perf_counter()
    params = make_series_params(series=series, slices=slices, size=size, seed=seed, prevalence=prevalence,
                                multiframe=multiframe, multiframe_from=multiframe_from)
    total = params.series * params.slices
    copied = multiframe_source(params)
    images = with_nodules = nodules = 0
    with staged_output_dir(out_dir, force=force) as staging, _progress(progress, total) as advance, \
            open(staging / GROUND_TRUTH_FILE, "w", encoding="utf-8") as truth:
        for index in range(params.series):
            plan = plan_series(params, index)
            frames = []
            for k in range(params.slices):
                pixels = stored(render_slice(plan, params, k))
                _save(staging, build_slice(plan, params, k, pixels))
                images += 1
                if index == copied:
                    frames.append(pixels)
                advance()
            truth.write(json.dumps(_truth(plan, params, multiframe=False), separators=(",", ":")) + "\n")
            if frames:
                _save(staging, build_multiframe(plan, params, frames))
                images += 1
                truth.write(json.dumps(_truth(plan, params, multiframe=True), separators=(",", ":")) + "\n")
            with_nodules += bool(plan.nodules)
            nodules += len(plan.nodules)
        summary = SeriesSummary(Path(out_dir), params, params.series, int(params.multiframe), images,
                                with_nodules, nodules, 0.0)
        (staging / SUMMARY_FILE).write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    return dataclasses.replace(summary, seconds=time.perf_counter() - started)
