"""The training set: labels from an output manifest, images fetched once and cached, split by patient.

* **Labels** come from the GT-format output manifest through the one reader,
  :func:`labeling.gt.output_manifest.read_output_manifest` (either backend). Each record gives one
  present/absent per label (the ``<attr>`` content of docs/architecture.md "The label shape") and, when
  consolidation wrote it, a per-label confidence. A label missing from a record is *unknown*: its
  loss weight is 0 (not "absent"). With confidence weighting, a label's loss weight is its
  consolidated confidence (posterior probability of the consolidated answer), so items the
  annotators disagreed on count less.
* **Images** come from Orthanc (``GET /instances/{id}/file``) or from a directory of
  ``<orthanc id>.dcm`` files (the GT pre-label staging layout / a SageMaker channel). Each is
  fetched once, turned into a model input by :func:`training.imaging.preprocess` and cached as
  ``<cache>/<preprocessing key>/<id>.npy`` beside ``<id>.json`` (a hash of the PatientID, the
  SOP Instance UID): a rerun with the same preprocessing reads only the cache. Files are written
  atomically (temporary name, then rename), so an interrupted run never leaves a half file.
* **Split by patient**: every image of a patient goes to the same side (no leakage between
  training and validation); patients are assigned by iterative stratification (Sechidis,
  Tsoumakas & Vlahavas 2011, "On the stratification of multi-label data"), adapted to groups:
  rarest label first, each patient to the side that still needs most of that label's positives.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol

import numpy as np

from labeling.outdir import atomic_file
from training.imaging import ImageError, Preprocessing, patient_key, preprocess, read_dicom

DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dicom-annotate" / "images"
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class DatasetError(ValueError):
    """The labels or images cannot make a training set; the message names the input."""


# --- labels ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabeledItem:
    """One image of the training set: its id and, per label, target (0/1) and loss weight."""

    instance_id: str
    target: np.ndarray   # (n_labels,) float32, 0 or 1
    weight: np.ndarray   # (n_labels,) float32; 0 = unknown
    line: Mapping[str, Any]


def instance_id_of(record: Any) -> str:
    """The image id of an output-manifest record: ``source`` (an Orthanc instance id), else the
    file name of ``source-ref`` without ``.dcm`` (the staged ``<orthanc id>.dcm`` layout)."""
    source = getattr(record, "source", None)
    if not source:
        ref = getattr(record, "source_ref", None) or ""
        source = ref.rstrip("/").rsplit("/", 1)[-1]
        if source.endswith(".dcm"):
            source = source[:-4]
    if not source or not _SAFE_ID.fullmatch(source):
        raise DatasetError(f"manifest record {getattr(record, 'line', {})!r:.120}: no usable image id "
                           "in 'source'/'source-ref' (expected an Orthanc instance id)")
    return source


def label_names_of(records: Sequence[Any]) -> list[str]:
    """The label names, in schema order: the manifest line's ``labels`` list when it has one,
    then any other label the consolidated content names (first seen first)."""
    names: list[str] = []
    for record in records:
        for name in list(record.line.get("labels") or []) + list(record.labels):
            if isinstance(name, str) and name not in names:
                names.append(name)
    return names


def labeled_items(records: Sequence[Any], label_names: Optional[Sequence[str]] = None, *,
                  confidence_weighting: bool = False) -> tuple[list[str], list[LabeledItem]]:
    """Targets and weights per record (module docstring); duplicates of an image are an error."""
    names = list(label_names) if label_names else label_names_of(records)
    if not names:
        raise DatasetError("the manifest names no labels (no 'labels' list and no consolidated labels)")
    items: list[LabeledItem] = []
    seen: set[str] = set()
    for record in records:
        iid = instance_id_of(record)
        if iid in seen:
            raise DatasetError(f"image {iid} appears twice in the manifest; one line per image")
        seen.add(iid)
        target = np.zeros(len(names), dtype=np.float32)
        weight = np.zeros(len(names), dtype=np.float32)
        for j, name in enumerate(names):
            if name not in record.labels:
                continue
            target[j] = 1.0 if record.labels[name] else 0.0
            conf = record.label_confidence.get(name) if confidence_weighting else None
            weight[j] = float(conf) if conf is not None else 1.0
        items.append(LabeledItem(iid, target, weight, record.line))
    if not items:
        raise DatasetError("the manifest has no labeled images")
    return names, items


def read_labels(manifest: str | Path, label_attribute: Optional[str] = None, *,
                confidence_weighting: bool = False,
                label_names: Optional[Sequence[str]] = None) -> tuple[list[str], list[LabeledItem]]:
    """Read an output manifest with the one reader and return ``labeled_items`` of it."""
    from labeling.gt.output_manifest import read_output_manifest

    records = read_output_manifest(manifest, label_attribute)
    return labeled_items(records, label_names, confidence_weighting=confidence_weighting)


# --- images ----------------------------------------------------------------------------------


class ImageSource(Protocol):
    """Where DICOM files come from: ``fetch(id)`` returns the Part-10 bytes."""

    def fetch(self, instance_id: str) -> bytes: ...

    def describe(self, instance_id: str) -> str: ...


class DirectorySource:
    """A directory of ``<orthanc id>.dcm`` files (GT staging layout, SageMaker channel)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"--images {self.root}: not a directory")

    def path(self, instance_id: str) -> Path:
        return self.root / f"{instance_id}.dcm"

    def fetch(self, instance_id: str) -> bytes:
        try:
            return self.path(instance_id).read_bytes()
        except FileNotFoundError:
            raise DatasetError(f"--images {self.root}: no file {instance_id}.dcm") from None

    def describe(self, instance_id: str) -> str:
        return str(self.path(instance_id))


class OrthancSource:
    """Orthanc's ``GET /instances/{id}/file`` (the stored file, byte for byte)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def fetch(self, instance_id: str) -> bytes:
        from labeling.orthanc.client import OrthancError

        try:
            return self.client.instance_file(instance_id)
        except OrthancError as exc:
            if exc.status == 404:
                raise DatasetError(f"Orthanc instance {instance_id}: not found on {self.client.url}") from None
            raise

    def describe(self, instance_id: str) -> str:
        return f"Orthanc instance {instance_id}"


@dataclass(frozen=True)
class CachedImage:
    instance_id: str
    path: Path            # the .npy file
    patient: str          # hash of PatientID (imaging.patient_key)
    sop_instance_uid: str


def save_cache_entry(npy: Path, meta: Path, array: np.ndarray, info: Mapping[str, Any]) -> None:
    """Write one cache entry (:class:`ImageCache`, :class:`training.volume.VolumeCache`): the array
    and its JSON beside it, each atomically."""
    with atomic_file(npy) as fh:
        np.save(fh, array)
    with atomic_file(meta, "w") as fh:
        fh.write(json.dumps(info))


class ImageCache:
    """Preprocessed images on disk, keyed by instance id + preprocessing (module docstring)."""

    def __init__(self, root: str | Path, prep: Preprocessing) -> None:
        self.prep = prep
        self.dir = Path(root) / prep.key()

    def _paths(self, instance_id: str) -> tuple[Path, Path]:
        return self.dir / f"{instance_id}.npy", self.dir / f"{instance_id}.json"

    def cached(self, instance_id: str) -> Optional[CachedImage]:
        npy, meta = self._paths(instance_id)
        if not (npy.is_file() and meta.is_file()):
            return None
        try:
            info = json.loads(meta.read_text())
        except ValueError:
            return None
        return CachedImage(instance_id, npy, info["patient"], info.get("sop_instance_uid", ""))

    def add(self, instance_id: str, data: bytes, *, name: str) -> CachedImage:
        ds = read_dicom(data, name=name)
        arr = preprocess(ds, self.prep, name=name)
        npy, meta = self._paths(instance_id)
        info = {"patient": patient_key(ds), "sop_instance_uid": str(ds.get("SOPInstanceUID", "")),
                "preprocessing": self.prep.to_dict()}
        save_cache_entry(npy, meta, arr, info)
        return CachedImage(instance_id, npy, info["patient"], info["sop_instance_uid"])

    def get(self, instance_id: str, source: ImageSource) -> CachedImage:
        hit = self.cached(instance_id)
        if hit is not None:
            return hit
        try:
            return self.add(instance_id, source.fetch(instance_id), name=source.describe(instance_id))
        except ImageError as exc:
            raise DatasetError(str(exc)) from None

    def get_many(self, ids: Sequence[str], source: ImageSource, *, workers: int = 4,
                 progress: Optional[Callable[[], None]] = None) -> list[CachedImage]:
        """Every image, in ``ids`` order; misses fetched by ``workers`` threads (I/O bound)."""
        def one(iid: str) -> CachedImage:
            result = self.get(iid, source)
            if progress:
                progress()
            return result

        if workers <= 1 or len(ids) <= 1:
            return [one(i) for i in ids]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, ids))


def load_arrays(images: Iterable[CachedImage]) -> np.ndarray:
    """Stack cached images into one ``(N, 1, S, S)`` float32 array (kept in memory for speed:
    128 px images take 64 KiB each, 10,000 of them 640 MiB)."""
    return np.stack([np.load(img.path) for img in images]).astype(np.float32, copy=False)


# --- split -----------------------------------------------------------------------------------


def split_by_patient(patients: Sequence[str], target: np.ndarray, weight: np.ndarray, *,
                     val_fraction: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices); no patient on both sides (module docstring).

    Iterative stratification over patients (Sechidis et al., ECML PKDD 2011), with each label's
    known-present and known-absent answers as two classes: a mostly-positive label still gets
    negatives on both sides, so its validation AUROC is defined. Needs at least two patients.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"validation fraction: must be between 0 and 1, got {val_fraction}")
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(patients):
        groups.setdefault(p, []).append(i)
    keys = list(groups)
    if len(keys) < 2:
        raise DatasetError(f"split by patient: need images of at least 2 patients, got {len(keys)}")
    rng = np.random.default_rng(seed)
    rng.shuffle(keys)
    known = (weight > 0).astype(np.float64)
    classes = np.concatenate([target * known, (1.0 - target) * known], axis=1)  # (N, 2L): present, absent
    pos = np.array([classes[groups[k]].sum(axis=0) for k in keys])            # (P, 2L)
    size = np.array([len(groups[k]) for k in keys], dtype=np.float64)         # (P,)
    fractions = np.array([1.0 - val_fraction, val_fraction])                 # train, val
    need_pos = fractions[:, None] * pos.sum(axis=0)[None, :]                 # (2, L)
    need_size = fractions * size.sum()
    side = np.full(len(keys), -1)

    def assign(p: int, s: int) -> None:
        side[p] = s
        need_pos[s] -= pos[p]
        need_size[s] -= size[p]

    def best_side(label: Optional[int]) -> int:
        # the side that still needs most of this label's positives; ties by images still needed
        size_pref = need_size / fractions
        if label is None or need_pos[0, label] == need_pos[1, label]:
            return int(np.argmax(size_pref))
        s = int(np.argmax(need_pos[:, label]))
        # a patient brings several images and labels: never overfill one side while the other
        # still needs images (keeps the validation share near val_fraction)
        if need_size[s] <= 0 < need_size[1 - s]:
            s = 1 - s
        return s

    while True:
        open_ = side < 0
        left = (pos * open_[:, None]).sum(axis=0)
        if left.sum() == 0:
            break
        label = int(np.argmin(np.where(left > 0, left, np.inf)))             # rarest class left
        for p in np.flatnonzero(open_ & (pos[:, label] > 0)):
            assign(p, best_side(label))
    for p in np.flatnonzero(side < 0):                                        # no known answer at all
        assign(p, best_side(None))
    for s in (1, 0):                                                          # both sides non-empty
        if not (side == s).any():
            donors = np.flatnonzero(side == 1 - s)
            side[donors[np.argmin(size[donors])]] = s
    train = sorted(i for p, k in enumerate(keys) if side[p] == 0 for i in groups[k])
    val = sorted(i for p, k in enumerate(keys) if side[p] == 1 for i in groups[k])
    return np.array(train, dtype=int), np.array(val, dtype=int)
