"""Series-level training and prediction (issue 14): a series or multi-frame task → one 3-D model input.

A labeled line of ``level`` ``series`` or ``multiframe`` (``manifest --level series``, then a labeling
job; README "Series tasks") names its slices in ``instances``, already ordered along the slice normal
(:mod:`labeling.dicom.series`). Its volume becomes a model input in three steps:

1. **Slices** in the line's order: each instance's pixels after the Modality LUT (PS3.3 C.11.1:
   Hounsfield units for CT), or a multi-frame instance's frames in file order with the Pixel Value
   Transformation of its Shared Functional Groups (PS3.3 C.7.6.16.2.9) when the top level has none.
   Slices of different sizes are refused (a ``mixed-size`` series needs resampling per slice first).
2. **Window** → [0, 1]: a fixed window in the modality's units, default the lung window
   -1000..400 HU (air to soft tissue; what shows a nodule in the lung), or ``minmax``: the volume's
   own 0.5..99.5 percentiles (MR, whose values have no fixed scale).
3. **Resampled** trilinearly to ``grid`` = (slices, rows, columns), default 32 × 64 × 64 — small enough
   that DenseNet121 with ``spatial_dims=3`` trains on 2 CPU cores in minutes — as float32
   ``(1, D, H, W)``.

Volumes are cached like images (:class:`training.dataset.ImageCache`): ``<cache>/<key>/<source>.npy`` +
``.json`` (the patient key of the first slice, for the split by patient), keyed by the task's
``source`` and :meth:`VolumePreprocessing.key`. A manifest must be one level: series lines train a 3-D
model, image lines a 2-D one; mixing them, or giving a model lines of the other level, is refused in
one line that says what to do (:func:`series_items`, :func:`check_level`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pydicom
import torch
import torch.nn.functional as F

from training.dataset import DEFAULT_CACHE_DIR, DatasetError, ImageSource, save_cache_entry
from training.imaging import ImageError, patient_key, pixels, read_dicom

SERIES_LEVELS = ("series", "multiframe")
DEFAULT_GRID = (32, 64, 64)
MIN_GRID = 32  # DenseNet121 halves every dimension five times (stem /4, three transitions /8)
LUNG_WINDOW = (-1000.0, 400.0)
VOLUME_VERSION = 1  # bump when the steps change: old cache entries stop matching


@dataclass(frozen=True)
class VolumePreprocessing:
    """How a series becomes a model input (stored in ``model.json``; keys the cache)."""

    grid: tuple[int, int, int] = DEFAULT_GRID
    window: str = "fixed"              # fixed | minmax
    window_range: tuple[float, float] = LUNG_WINDOW
    volume_version: int = VOLUME_VERSION

    def __post_init__(self) -> None:
        grid = tuple(int(v) for v in self.grid)
        if len(grid) != 3 or not all(MIN_GRID <= v <= 512 for v in grid):
            raise ValueError(f"volume size: three sizes (slices, rows, columns) of {MIN_GRID}..512 (DenseNet121 "
                             f"halves each five times), got {self.grid}")
        object.__setattr__(self, "grid", grid)
        object.__setattr__(self, "window_range", tuple(float(v) for v in self.window_range))
        if self.window not in ("fixed", "minmax"):
            raise ValueError(f"volume window: 'fixed' or 'minmax', got {self.window!r}")
        if not self.window_range[0] < self.window_range[1]:
            raise ValueError(f"volume window: low must be below high, got {self.window_range}")

    @property
    def size(self) -> int:
        """The in-plane size (``model.json``'s ``image_size``)."""
        return self.grid[-1]

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "VolumePreprocessing":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
                      if k in ("grid", "window", "window_range", "volume_version")})

    def key(self) -> str:
        return "vol-" + hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def parse_volume_size(text: str) -> tuple[int, int, int]:
    """``"32,64,64"`` → (32, 64, 64); ValueError names the flag."""
    try:
        grid = tuple(int(v) for v in str(text).replace("x", ",").split(","))
    except ValueError:
        raise ValueError(f"--volume-size: {text!r} is not D,H,W (three integers)") from None
    if len(grid) != 3:
        raise ValueError(f"--volume-size: {text!r} is not D,H,W (three integers)")
    return grid  # type: ignore[return-value]


# --- which level ------------------------------------------------------------------------------


def is_series_line(line: Mapping[str, Any]) -> bool:
    return line.get("level") in SERIES_LEVELS


def series_items(items: Sequence[Any], what: str = "the manifest") -> bool:
    """True when every item (anything with ``.line``, or a line) is a series task, False when none is;
    DatasetError naming the first line of the other kind when they are mixed."""
    lines = [getattr(item, "line", item) for item in items]
    levels = [is_series_line(line) for line in lines]
    if all(levels) or not any(levels):
        return bool(levels) and levels[0]
    first = levels.index(not levels[0])
    kind = "a series task" if levels[first] else "an image"
    raise DatasetError(f"{what}: line {first + 1} ({lines[first].get('source')}) is {kind} but line 1 is not; "
                       "a model learns one level: split the manifest into image lines and series lines "
                       "(manifest --level series) and train one model per level")


def check_level(info: Mapping[str, Any], items: Sequence[Any], what: str) -> bool:
    """The items' level must be the model's (``model.json`` ``spatial_dims``); True for a series model."""
    series = series_items(items, what)
    model_series = int(info.get("spatial_dims", 2)) == 3
    if items and series != model_series:
        if model_series:
            raise DatasetError(f"{what}: image lines, but this model is a series (3-D) model; give it a "
                               "manifest of series tasks (manifest --level series) or use a 2-D image model")
        raise DatasetError(f"{what}: series tasks (level {getattr(items[0], 'line', items[0]).get('level')}), but "
                           "this model is a 2-D image model (one image per line); train a series model on "
                           "series labels, or build the manifest without --level series")
    return series


# --- volumes ----------------------------------------------------------------------------------


def _rescaled_frames(ds: pydicom.Dataset, name: str) -> np.ndarray:
    """A multi-frame instance's frames (F, H, W) in its modality's units."""
    try:
        arr = np.asarray(ds.pixel_array, dtype=np.float32)
    except Exception as exc:  # pydicom raises several types for undecodable data
        raise ImageError(f"{name}: cannot decode pixel data: {exc}") from None
    if arr.ndim != 3:
        raise ImageError(f"{name}: expected frames of one sample each, got shape {arr.shape}")
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is None and "SharedFunctionalGroupsSequence" in ds:
        shared = ds.SharedFunctionalGroupsSequence[0]
        if "PixelValueTransformationSequence" in shared:
            item = shared.PixelValueTransformationSequence[0]
            slope, intercept = item.get("RescaleSlope"), item.get("RescaleIntercept")
    return arr * float(slope if slope is not None else 1.0) + float(intercept if intercept is not None else 0.0)


def read_volume(line: Mapping[str, Any], source: ImageSource) -> tuple[np.ndarray, pydicom.Dataset]:
    """The task's slices (D, H, W) in the line's order (module docstring, step 1) and its first dataset."""
    instances = line.get("instances")
    if not isinstance(instances, list) or not instances:
        raise DatasetError(f"series task {line.get('source')}: no 'instances' list (build it with manifest "
                           "--level series)")
    if line["level"] == "multiframe":
        ds = read_dicom(source.fetch(instances[0]), name=source.describe(instances[0]))
        return _rescaled_frames(ds, source.describe(instances[0])), ds
    slices, first = [], None
    for instance in instances:
        name = source.describe(instance)
        ds = read_dicom(source.fetch(instance), name=name)
        plane = pixels(ds, name=name)
        if slices and plane.shape != slices[0].shape:
            raise DatasetError(f"{name}: {plane.shape[0]}x{plane.shape[1]} pixels, but the series' first slice is "
                               f"{slices[0].shape[0]}x{slices[0].shape[1]}; resample it first (flag mixed-size)")
        slices.append(plane)
        first = first or ds
    return np.stack(slices), first  # type: ignore[return-value]


def volume_input(volume: np.ndarray, prep: VolumePreprocessing) -> np.ndarray:
    """Steps 2-3 of the module docstring: window, then resample to ``prep.grid``; (1, D, H, W) float32."""
    low, high = prep.window_range if prep.window == "fixed" else np.percentile(volume, [0.5, 99.5])
    out = np.clip((volume - low) / max(float(high - low), 1e-6), 0.0, 1.0).astype(np.float32)
    t = torch.from_numpy(np.ascontiguousarray(out))[None, None]
    if tuple(t.shape[-3:]) != prep.grid:
        t = F.interpolate(t, size=prep.grid, mode="trilinear", align_corners=False)
    return t[0].numpy().astype(np.float32, copy=False)


class VolumeCache:
    """Preprocessed volumes on disk, keyed by task source + preprocessing (module docstring)."""

    def __init__(self, root: str | Path, prep: VolumePreprocessing) -> None:
        self.prep = prep
        self.dir = Path(root) / prep.key()

    def get(self, line: Mapping[str, Any], source: ImageSource) -> tuple[Path, str]:
        """(``.npy`` path, patient key) of the task's volume, built on first use."""
        npy, meta = self.dir / f"{line['source']}.npy", self.dir / f"{line['source']}.json"
        if npy.is_file() and meta.is_file():
            try:
                return npy, json.loads(meta.read_text())["patient"]
            except (ValueError, KeyError):
                pass
        try:
            volume, first = read_volume(line, source)
        except ImageError as exc:
            raise DatasetError(str(exc)) from None
        info = {"patient": patient_key(first), "slices": int(volume.shape[0]), "preprocessing": self.prep.to_dict()}
        save_cache_entry(npy, meta, volume_input(volume, self.prep), info)
        return npy, info["patient"]


def gather_volumes(lines: Sequence[Mapping[str, Any]], source: ImageSource, prep: VolumePreprocessing, *,
                   cache_dir: Optional[str | Path] = None, progress: bool = True,
                   workers: int = 4) -> tuple[np.ndarray, list[str]]:
    """(volumes (N, 1, D, H, W), patient keys) of the series lines, through the disk cache."""
    cache = VolumeCache(cache_dir or DEFAULT_CACHE_DIR, prep)

    def every(tick: Callable[[], None]) -> list[tuple[Path, str]]:
        def one(line: Mapping[str, Any]) -> tuple[Path, str]:
            out = cache.get(line, source)
            tick()
            return out

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            return list(pool.map(one, lines))

    if progress:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task(f"series volumes ({'x'.join(map(str, prep.grid))})", total=len(lines))
            got = every(lambda: bar.advance(task))
    else:
        got = every(lambda: None)
    volumes = np.stack([np.load(path) for path, _ in got]).astype(np.float32, copy=False)
    return volumes, [patient for _, patient in got]


# --- prediction -------------------------------------------------------------------------------


def predict_lines(predictor: Any, lines: Sequence[Mapping[str, Any]], source: ImageSource) -> list[dict[str, Any]]:
    """One series-level prediction per task (:mod:`training.inference`'s shape, plus ``level`` and the
    ordered ``instances`` the SR write-back references)."""
    prep: VolumePreprocessing = predictor.prep
    out = []
    for line in lines:
        volume, first = read_volume(line, source)
        prob = predictor.probabilities(volume_input(volume, prep)[None])[0]
        row = predictor.prediction(_Input(str(line["source"]), first), prob)
        row.update(level=line["level"], instances=list(line["instances"]),
                   sop_instance_uid=str(first.get("SOPInstanceUID", "")))
        out.append(row)
    return out


@dataclass(frozen=True)
class _Input:
    source: str
    dataset: pydicom.Dataset
