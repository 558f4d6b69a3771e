"""Training: MONAI DenseNet121 (2-D, one channel), multi-label, on the consolidated labels.

* Model: ``monai.networks.nets.DenseNet121(spatial_dims=2, in_channels=1, out_channels=L)`` (Huang
  et al. 2017), one logit per label; loss: binary cross-entropy with logits per label (multi-label:
  findings are independent, an image may have several or none — the AWS sample trained a
  single-label softmax on a multi-label UI), weighted per (image, label) by
  :mod:`training.dataset`'s weights (0 = label unknown; optionally the consolidation confidence).
* Augmentation (MONAI array transforms, training images only): left-right flip, rotation up to
  ±0.15 rad, zoom 0.9–1.1, intensity scale ±10 % and shift ±0.05, a little Gaussian noise.
* Series: an output manifest of series or multi-frame tasks (``manifest --level series``) trains the
  same network with ``spatial_dims=3`` on volumes resampled to ``volume_size`` (default 32 x 64 x 64;
  :mod:`training.volume`), with the flip and intensity augmentations; the report is the same, per
  series. ``model.json`` records ``spatial_dims``, ``level`` and the volume preprocessing.
* Optimiser AdamW (Loshchilov & Hutter 2019), cosine learning-rate decay over ``epochs``.
* Early stopping on the validation macro AUROC (ties: lower validation loss) with ``patience``
  epochs; the best epoch's weights are the checkpoint (``model.pt``), with ``model.json``
  (labels, image size, preprocessing, thresholds) beside it for inference.
* Seeds: Python, NumPy, PyTorch and MONAI's transforms (``monai.utils.set_determinism``), with
  deterministic algorithms where PyTorch has them (``warn_only``: a few CPU kernels have none).
* CPU here, CUDA when available (``--device``); on CPU PyTorch uses the cores this process may
  use. Augmentation always runs single-threaded (torch's intra-op threads make these small
  transforms ~4x slower, ``bench/train_input.py``): in this process on CPU, where the DenseNet
  step is ~50x slower than augmenting (:func:`default_workers`: none); on CUDA, where the GPU
  outruns a core, in every core but one as loader worker processes (at most
  :data:`MAX_LOADER_WORKERS`, one thread each), or with ``--augment-on device`` on the GPU itself (the same MONAI transforms, on tensors
  already there; ``auto`` picks it on CUDA when fewer than 6 CPUs could feed the GPU).

``train_from_manifest(...)`` is the one function behind ``python -m training train``, the
SageMaker entry point and the demo; ``python -m training evaluate`` re-runs the report for a
saved model on any labeled manifest.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import hashlib
import json
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import torch

import torch.nn.functional as F

from training.dataset import (
    DEFAULT_CACHE_DIR,
    DatasetError,
    DirectorySource,
    ImageCache,
    ImageSource,
    LabeledItem,
    OrthancSource,
    load_arrays,
    read_labels,
    split_by_patient,
)
from training import volume
from training.imaging import Preprocessing
from training.report import auroc_per_label, macro, write_report

MODEL_FORMAT = "dicom-annotate-model/1"


def _print(message: str) -> None:
    print(message, flush=True)  # flushed: epoch lines show up in logs (SageMaker, CI) as they happen


MODEL_NAME = "dicom-annotate DenseNet121"


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters (the CLI flags and SageMaker hyperparameters of the same names)."""

    epochs: int = 50
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 15
    image_size: int = 128
    window: str = "file"
    val_fraction: float = 0.25
    seed: int = 0
    augment: bool = True
    confidence_weighting: bool = False
    num_workers: Optional[int] = None   # None: default_workers(device)
    augment_on: str = "auto"            # auto | loader | device (see the module docstring)
    threads: Optional[int] = None       # None: the CPUs this process may use
    device: str = "auto"                # auto | cpu | cuda
    volume_size: tuple[int, int, int] = (32, 64, 64)  # series models: the (D, H, W) grid (training/volume.py)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning rate: must be positive, got {self.learning_rate}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device: must be auto, cpu or cuda, got {self.device!r}")
        if self.augment_on not in ("auto", "loader", "device"):
            raise ValueError(f"augment on: must be auto, loader or device, got {self.augment_on!r}")

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(size=self.image_size, window=self.window)  # type: ignore[arg-type]


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


MAX_LOADER_WORKERS = 16
# auto: below this many CPUs the workers cannot feed a GPU at twice its step rate (measured ~480
# augmented samples/s per worker, bench/train_input.py; DenseNet121 ~1,000 samples/s at batch 64)
GPU_AUGMENT_BELOW_CPUS = 6


def default_workers(device_type: str = "cpu") -> int:
    """Loader worker processes (module docstring): none on CPU (augmenting in this process, one
    thread, outruns the model ~50x); on CUDA every core but the main process's, at most
    MAX_LOADER_WORKERS."""
    if device_type != "cuda":
        return 0
    return max(0, min(available_cpus() - 1, MAX_LOADER_WORKERS))


def augments_on_device(config: "TrainConfig", device: torch.device) -> bool:
    """True when the augmentation runs on the GPU, on batches, instead of in the loader."""
    if not config.augment or device.type != "cuda":
        return False
    return config.augment_on == "device" or (config.augment_on == "auto"
                                             and available_cpus() < GPU_AUGMENT_BELOW_CPUS)


def augment_batch(transform: Callable[[Any], Any], x: torch.Tensor) -> torch.Tensor:
    """The training augmentation applied per sample to a batch already on its device: MONAI's
    transforms take tensors and keep them where they are (flip, rotate and zoom run as torch ops)."""
    return torch.stack([torch.as_tensor(transform(sample), device=x.device) for sample in x])


def seed_everything(seed: int) -> None:
    from monai.utils import set_determinism

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    set_determinism(seed=seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def build_model(n_labels: int, spatial_dims: int = 2) -> torch.nn.Module:
    from monai.networks.nets import DenseNet121

    return DenseNet121(spatial_dims=spatial_dims, in_channels=1, out_channels=n_labels)


def augmentation(spatial_dims: int = 2):
    """The training-time MONAI transforms (module docstring), on ``(1, H, W)`` arrays; on series volumes
    ``(1, D, H, W)`` the flip (left-right) and the intensity ones only (3-D rotation and zoom cost
    more than the small 3-D model's step on a CPU)."""
    from monai.transforms import (
        Compose,
        RandFlip,
        RandGaussianNoise,
        RandRotate,
        RandScaleIntensity,
        RandShiftIntensity,
        RandZoom,
    )

    if spatial_dims == 3:
        return Compose([RandFlip(prob=0.5, spatial_axis=2), RandScaleIntensity(factors=0.1, prob=0.5),
                        RandShiftIntensity(offsets=0.05, prob=0.5), RandGaussianNoise(prob=0.2, std=0.01)])
    return Compose([
        RandFlip(prob=0.5, spatial_axis=1),
        RandRotate(range_x=0.15, prob=0.5, padding_mode="zeros", keep_size=True),
        RandZoom(prob=0.5, min_zoom=0.9, max_zoom=1.1, keep_size=True),
        RandScaleIntensity(factors=0.1, prob=0.5),
        RandShiftIntensity(offsets=0.05, prob=0.5),
        RandGaussianNoise(prob=0.2, std=0.01),
    ])


class ArrayDataset(torch.utils.data.Dataset):
    """Images (N, 1, S, S), targets and weights (N, L) in memory; ``transform`` per sample."""

    def __init__(self, images: np.ndarray, target: np.ndarray, weight: np.ndarray,
                 transform: Optional[Callable[[Any], Any]] = None) -> None:
        self.images, self.target, self.weight, self.transform = images, target, weight, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        x = self.images[i]
        if self.transform is not None:
            with _one_thread():
                x = self.transform(x)
        x = torch.as_tensor(np.asarray(x, dtype=np.float32))
        return x, torch.from_numpy(self.target[i]), torch.from_numpy(self.weight[i])


@contextlib.contextmanager
def _one_thread():
    """Augment with one torch thread: in the main process (0 workers) torch's pool of intra-op
    threads, sized for the model, makes these small transforms ~4x slower; workers already have one."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _worker_init(worker_id: int) -> None:
    # one thread per worker (the model gets the cores), and a distinct augmentation stream each
    torch.set_num_threads(1)
    info = torch.utils.data.get_worker_info()
    transform = getattr(info.dataset, "transform", None)
    if transform is not None and hasattr(transform, "set_random_state"):
        transform.set_random_state(seed=info.seed % 2**32)


def make_loader(images: np.ndarray, target: np.ndarray, weight: np.ndarray, *, batch_size: int,
                augment: bool, shuffle: bool, num_workers: int, seed: int,
                pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """Batches of (x, target, weight); images (N, 1, S, S) or series volumes (N, 1, D, H, W)."""
    from monai.data import set_track_meta

    set_track_meta(False)  # plain tensors out of the transforms: no metadata bookkeeping per sample
    transform = augmentation(images.ndim - 2) if augment else None
    if transform is not None:
        transform.set_random_state(seed=seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return torch.utils.data.DataLoader(
        ArrayDataset(images, target, weight, transform), batch_size=batch_size, shuffle=shuffle,
        num_workers=num_workers, worker_init_fn=_worker_init if num_workers else None,
        persistent_workers=bool(num_workers), generator=generator, pin_memory=pin_memory,
        # a lone last sample cannot be batch-normalised where the network has pooled it to 1 voxel
        # (a 32-slice volume); shuffled, it is another sample each epoch
        drop_last=shuffle and len(images) % batch_size == 1 and len(images) > 1)


def weighted_bce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits, averaged over the known (weight > 0) entries."""
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (loss * weight).sum() / weight.sum().clamp_min(1e-6)


@torch.no_grad()
def predict_probs(model: torch.nn.Module, images: np.ndarray, device: torch.device,
                  batch_size: int = 64) -> np.ndarray:
    """Sigmoid probabilities (N, L) in eval mode."""
    model.eval()
    out = []
    for b in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[b:b + batch_size])).to(device)
        out.append(torch.sigmoid(model(x)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


@dataclass
class FitResult:
    state: dict[str, torch.Tensor]
    history: list[dict[str, Any]]
    best_epoch: int
    val_prob: np.ndarray
    seconds: float
    device: str


def fit(train: tuple[np.ndarray, np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray, np.ndarray],
        n_labels: int, config: TrainConfig, *, log: Callable[[str], None] = _print,
        checkpoint: Optional[Callable[[dict[str, torch.Tensor], int], None]] = None) -> FitResult:
    """Train with early stopping on validation macro AUROC (module docstring)."""
    seed_everything(config.seed)
    device = resolve_device(config.device)
    torch.set_num_threads(max(1, config.threads or available_cpus()))
    workers = default_workers(device.type) if config.num_workers is None else int(config.num_workers)
    on_device = augments_on_device(config, device)
    loader = make_loader(*train, batch_size=config.batch_size, augment=config.augment and not on_device,
                         shuffle=True, num_workers=workers, seed=config.seed, pin_memory=device.type == "cuda")
    dims = train[0].ndim - 2  # 2: images; 3: series volumes (training/volume.py)
    device_transform = augmentation(dims) if on_device else None
    if device_transform is not None:
        device_transform.set_random_state(seed=config.seed)
    model = build_model(n_labels, dims).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.epochs,
                                                          eta_min=config.learning_rate * 0.05)
    x_val, y_val, w_val = val
    best: tuple[float, float] = (-np.inf, -np.inf)
    best_state: dict[str, torch.Tensor] = {}
    best_epoch, best_prob, since_best = 0, np.zeros_like(y_val), 0
    history: list[dict[str, Any]] = []
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.train()
        total, count = 0.0, 0
        for x, y, w in loader:
            x, y, w = x.to(device, non_blocking=True), y.to(device), w.to(device)
            if device_transform is not None:
                x = augment_batch(device_transform, x)
            loss = weighted_bce(model(x), y, w)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(x)
            count += len(x)
        schedule.step()
        prob = predict_probs(model, x_val, device)
        val_loss = float(weighted_bce(torch.logit(torch.from_numpy(prob).clamp(1e-6, 1 - 1e-6)),
                                      torch.from_numpy(y_val), torch.from_numpy(w_val)))
        aurocs = auroc_per_label(y_val, prob, w_val)
        score = macro(aurocs)
        history.append({"epoch": epoch, "train_loss": round(total / max(count, 1), 6),
                        "val_loss": round(val_loss, 6),
                        "val_macro_auroc": round(score, 6) if np.isfinite(score) else None,
                        "seconds": round(time.perf_counter() - started, 2)})
        key = (score if np.isfinite(score) else -1.0, -val_loss)
        improved = key > best
        if improved:
            best, best_epoch, best_prob, since_best = key, epoch, prob, 0
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
            if checkpoint:
                checkpoint(best_state, epoch)
        else:
            since_best += 1
        log(f"epoch {epoch:3d}/{config.epochs}  train loss {history[-1]['train_loss']:.4f}  "
            f"val loss {val_loss:.4f}  val macro AUROC {score:.4f}{'  *' if improved else ''}  "
            f"({history[-1]['seconds']:.0f} s)")
        if since_best >= config.patience:
            log(f"early stop: no better validation macro AUROC for {config.patience} epochs")
            break
    return FitResult(best_state, history, best_epoch, best_prob, time.perf_counter() - started, str(device))


# --- model files -----------------------------------------------------------------------------


def save_model(out_dir: Path, state: Mapping[str, torch.Tensor], labels: Sequence[str],
               prep: Preprocessing, *, extra: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """``model.pt`` (the state dict) and ``model.json`` (what inference needs); returns the JSON."""
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(dict(state), out_dir / "model.pt")
    digest = hashlib.sha256((out_dir / "model.pt").read_bytes()).hexdigest()
    import monai

    info: dict[str, Any] = {
        "format": MODEL_FORMAT,
        "name": MODEL_NAME,
        "version": digest[:12],          # identifies the weights (the SR observer's device version)
        "architecture": "monai.networks.nets.DenseNet121",
        "spatial_dims": 2, "in_channels": 1, "out_channels": len(labels),
        "labels": list(labels),
        "image_size": prep.size,
        "preprocessing": prep.to_dict(),
        "thresholds": {name: 0.5 for name in labels},
        "output": "sigmoid probability per label (multi-label)",
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "torch": torch.__version__, "monai": monai.__version__,
    }
    if extra:
        info.update(extra)
    (out_dir / "model.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def load_model(model_dir: str | Path, device: Optional[torch.device] = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The network (eval mode) and its ``model.json``; ValueError names a missing/foreign file."""
    d = Path(model_dir)
    try:
        info = json.loads((d / "model.json").read_text())
    except FileNotFoundError:
        raise ValueError(f"{d}: no model.json (train a model with `python -m training train`)") from None
    except ValueError as exc:
        raise ValueError(f"{d / 'model.json'}: not JSON ({exc})") from None
    if info.get("format") != MODEL_FORMAT:
        raise ValueError(f"{d / 'model.json'}: format {info.get('format')!r}, expected {MODEL_FORMAT!r}")
    device = device or resolve_device("auto")
    model = build_model(int(info["out_channels"]), int(info.get("spatial_dims", 2)))
    try:
        state = torch.load(d / "model.pt", map_location=device, weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{d}: no model.pt beside model.json") from None
    model.load_state_dict(state)
    model.to(device).eval()
    return model, info


# --- the pipeline ----------------------------------------------------------------------------


def gather_images(items: Sequence[LabeledItem], source: ImageSource, prep: Preprocessing, *,
                  cache_dir: Optional[str | Path] = None, progress: bool = True,
                  workers: int = 4) -> tuple[np.ndarray, list[str]]:
    """(images (N, 1, S, S), patient keys) of ``items``, through the disk cache."""
    cache = ImageCache(cache_dir or DEFAULT_CACHE_DIR, prep)
    ids = [it.instance_id for it in items]
    if progress:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task(f"images ({prep.size} px)", total=len(ids))
            cached = cache.get_many(ids, source, workers=workers, progress=lambda: bar.advance(task))
    else:
        cached = cache.get_many(ids, source, workers=workers)
    return load_arrays(cached), [c.patient for c in cached]


MIN_PER_CLASS = 1
"""The stated minimum: per label, this many known positives and negatives on each side of the split
(validation: so its AUROC is defined; training: so there is something to learn)."""


def check_enough_examples(target: np.ndarray, weight: np.ndarray, train: np.ndarray, val: np.ndarray,
                          labels: Sequence[str]) -> None:
    """Refuse (DatasetError) a labeled set below :data:`MIN_PER_CLASS`, naming the first short label."""
    for side, rows in (("validation", val), ("training", train)):
        for j, name in enumerate(labels):
            known = target[rows, j][weight[rows, j] > 0]
            positives, negatives = int((known > 0.5).sum()), int((known <= 0.5).sum())
            if min(positives, negatives) < MIN_PER_CLASS:
                raise DatasetError(
                    f"too few labeled images to train: the {side} split ({len(rows)} images) holds "
                    f"{positives} positive and {negatives} negative {name!r}; each label needs at least "
                    f"{MIN_PER_CLASS} of each on both sides of the split by patient (so AUROC is defined); "
                    "label more images or more patients")


def train_arrays(images: np.ndarray, target: np.ndarray, weight: np.ndarray, patients: Sequence[str],
                 labels: Sequence[str], out_dir: str | Path, *, config: TrainConfig = TrainConfig(),
                 instance_ids: Optional[Sequence[str]] = None, report_dir: Optional[str | Path] = None,
                 log: Callable[[str], None] = _print, extra: Optional[Mapping[str, Any]] = None,
                 prep: Any = None) -> dict[str, Any]:
    """Split by patient, fit, save the model and write the report; returns ``metrics.json``'s content.
    ``prep``: what ``model.json`` records (default the config's image preprocessing)."""
    out = Path(out_dir)
    report_out = Path(report_dir) if report_dir else out
    tr, va = split_by_patient(patients, target, weight, val_fraction=config.val_fraction, seed=config.seed)
    n_tp, n_vp = len({patients[i] for i in tr}), len({patients[i] for i in va})
    log(f"split by patient: {len(tr)} training images ({n_tp} patients), "
        f"{len(va)} validation images ({n_vp} patients)")
    check_enough_examples(target, weight, tr, va, labels)
    fit_result = fit((images[tr], target[tr], weight[tr]), (images[va], target[va], weight[va]),
                     len(labels), config, log=log)
    prep = prep or config.preprocessing
    val_auroc = macro(auroc_per_label(target[va], fit_result.val_prob, weight[va]))
    model_info = save_model(out, fit_result.state, labels, prep, extra={
        "best_epoch": fit_result.best_epoch,
        "val_macro_auroc": round(val_auroc, 6) if np.isfinite(val_auroc) else None,
        "n_train": len(tr), "n_val": len(va),
        "hyperparameters": asdict(config), **(extra or {})})
    if instance_ids is not None:
        (out / "split.json").write_text(json.dumps(
            {"train": [instance_ids[i] for i in tr], "validation": [instance_ids[i] for i in va]}, indent=1) + "\n")
    metrics = write_report(
        report_out, labels, target[va], fit_result.val_prob, weight[va], n_train=len(tr),
        history=fit_result.history, best_epoch=fit_result.best_epoch,
        extra={"n_train_patients": n_tp, "n_val_patients": n_vp, "best_epoch": fit_result.best_epoch,
               "epochs_run": len(fit_result.history), "training_seconds": round(fit_result.seconds, 1),
               "device": fit_result.device, "model": {"name": model_info["name"], "version": model_info["version"]},
               "hyperparameters": asdict(config), **(extra or {})})
    return metrics


def train_from_manifest(manifest: str | Path, out_dir: str | Path, *, label_attribute: Optional[str] = None,
                        images_dir: Optional[str | Path] = None, orthanc: Any = None,
                        config: TrainConfig = TrainConfig(), cache_dir: Optional[str | Path] = None,
                        report_dir: Optional[str | Path] = None, progress: bool = True,
                        log: Callable[[str], None] = _print) -> dict[str, Any]:
    """Train on a GT-format output manifest; images from ``images_dir`` (``<id>.dcm``) or Orthanc.

    ``orthanc`` is an :class:`labeling.orthanc.client.OrthancClient` (or anything with
    ``instance_file(id)``). Writes ``model.pt``, ``model.json``, ``split.json`` into ``out_dir``
    and ``metrics.json``, ``report.html`` and the PNGs into ``report_dir`` (default ``out_dir``).
    Returns the metrics (``metrics.json``'s content).
    """
    labels, items = read_labels(manifest, label_attribute, confidence_weighting=config.confidence_weighting)
    if images_dir is not None:
        source: ImageSource = DirectorySource(images_dir)
    elif orthanc is not None:
        source = OrthancSource(orthanc)
    else:
        raise DatasetError("images: give a directory of <orthanc id>.dcm files or an Orthanc connection")
    extra: dict[str, Any] = {"manifest": Path(manifest).name, "label_attribute": label_attribute}
    prep: Any = config.preprocessing
    if volume.series_items(items, str(manifest)):  # series labels: a 3-D model (training/volume.py)
        prep = volume.VolumePreprocessing(grid=config.volume_size)
        log(f"{len(items)} labeled series, labels: {', '.join(labels)}; volumes resampled to "
            f"{'x'.join(map(str, prep.grid))}")
        images, patients = volume.gather_volumes([it.line for it in items], source, prep, cache_dir=cache_dir,
                                                 progress=progress)
        extra.update(level="series", spatial_dims=3, grid=list(prep.grid))
    else:
        log(f"{len(items)} labeled images, labels: {', '.join(labels)}")
        images, patients = gather_images(items, source, prep, cache_dir=cache_dir, progress=progress)
    target = np.stack([it.target for it in items])
    weight = np.stack([it.weight for it in items])
    return train_arrays(images, target, weight, patients, labels, out_dir, config=config,
                        instance_ids=[it.instance_id for it in items], report_dir=report_dir, log=log,
                        extra=extra, prep=prep)


def evaluate_model(model_dir: str | Path, manifest: str | Path, out_dir: str | Path, *,
                   label_attribute: Optional[str] = None, images_dir: Optional[str | Path] = None,
                   orthanc: Any = None, cache_dir: Optional[str | Path] = None, only_validation: bool = False,
                   progress: bool = True) -> dict[str, Any]:
    """Re-run the report of a saved model on the labeled images of ``manifest``."""
    model, info = load_model(model_dir)
    labels = list(info["labels"])
    _, items = read_labels(manifest, label_attribute, label_names=labels)
    if only_validation:
        try:
            keep = set(json.loads((Path(model_dir) / "split.json").read_text())["validation"])
        except FileNotFoundError:
            raise ValueError(f"--only-validation: {model_dir} has no split.json") from None
        items = [it for it in items if it.instance_id in keep]
        if not items:
            raise DatasetError(f"--only-validation: no image of {manifest} is in the model's validation set")
    source: ImageSource = DirectorySource(images_dir) if images_dir is not None else OrthancSource(orthanc)
    if volume.check_level(info, items, str(manifest)):
        images, _ = volume.gather_volumes([it.line for it in items], source,
                                          volume.VolumePreprocessing.from_dict(info["preprocessing"]),
                                          cache_dir=cache_dir, progress=progress)
    else:
        images, _ = gather_images(items, source, Preprocessing.from_dict(info["preprocessing"]),
                                  cache_dir=cache_dir, progress=progress)
    prob = predict_probs(model, images, next(model.parameters()).device)
    hp = info.get("hyperparameters") or {}
    return write_report(out_dir, labels, np.stack([it.target for it in items]), prob,
                        np.stack([it.weight for it in items]), n_train=int(info.get("n_train", 0) or 0),
                        extra={"model": {"name": info["name"], "version": info["version"]},
                               "manifest": Path(manifest).name, "hyperparameters": hp,
                               "evaluated": "validation split" if only_validation else "every labeled image"},
                        title="Model evaluation (re-run)")
