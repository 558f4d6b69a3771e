"""Training input benchmark: data-loader throughput vs model step throughput, on CPU and on CUDA.

The question: does the model wait for data? The loader path is the one training uses: a synthetic
DX dataset (``devkit.synth``) read through :class:`training.dataset.ImageCache` (decoded,
windowed, resized once, cached as .npy), stacked in memory, and served by
:func:`training.train.make_loader` with the training augmentation (MONAI flip, rotation, zoom,
intensity, noise; one torch thread per augmenting process), with 0, 1, 2 ... worker processes.
The model path is one DenseNet121 training step (forward, BCE-with-logits, backward, AdamW) at
each ``--batch-sizes`` size, on CUDA when available (else CPU). With CUDA, the same augmentation
run on the GPU on batches (:func:`training.train.augment_batch`, ``--augment-on device``) is timed
too.

Every setting runs ``--rounds`` times, interleaved (model, then each loader setting, per round);
medians and min–max are printed with the load average, since the machines are shared. The ratio
loader / model must be >= 2 at the largest batch (goal); without CUDA the GPU figure is an
estimate: the per-worker loader rate measured here times the workers a GPU host would run
(:func:`training.train.default_workers` with its CPUs, ``--gpu-host-cpus``), against
``--gpu-samples-per-s`` (DenseNet121 at batch 64 on a current GPU, ~1,000 samples/s).

Run: ``.venv/bin/python bench/train_input.py [--image-size 128] [--batch-sizes 16,64] [--workers 0,1,2]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from devkit.synth import generate_dataset  # noqa: E402
from training.dataset import DirectorySource, ImageCache, load_arrays  # noqa: E402
from devkit.demo_labels import link_images, synth_records  # noqa: E402
from training.imaging import Preprocessing  # noqa: E402
from training.train import (  # noqa: E402
    MAX_LOADER_WORKERS,
    augment_batch,
    augmentation,
    available_cpus,
    build_model,
    make_loader,
    resolve_device,
    weighted_bce,
)


def loader_rate(images: np.ndarray, target: np.ndarray, *, batch: int, workers: int, samples: int) -> float:
    """Augmented samples per second out of the training DataLoader (after a warm-up batch)."""
    weight = np.ones_like(target)
    loader = make_loader(images, target, weight, batch_size=batch, augment=True, shuffle=True,
                         num_workers=workers, seed=0)
    it = iter(loader)
    next(it)  # warm-up: worker start, first transform calls
    done, started = 0, time.perf_counter()
    while done < samples:
        try:
            x, _, _ = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        done += len(x)
    rate = done / (time.perf_counter() - started)
    del it, loader
    return rate


def model_rate(n_labels: int, size: int, *, batch: int, steps: int, device: torch.device) -> float:
    """Training samples per second of DenseNet121 (forward + backward + AdamW step)."""
    model = build_model(n_labels).to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 1, size, size, device=device)
    y = (torch.rand(batch, n_labels, device=device) > 0.5).float()
    w = torch.ones_like(y)

    def step() -> None:
        loss = weighted_bce(model(x), y, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (cuDNN algorithm choice on CUDA)
    sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps * batch / (time.perf_counter() - started)


def device_augment_rate(images: np.ndarray, *, batch: int, device: torch.device, batches: int) -> float:
    """Samples per second of the training augmentation applied on ``device`` to resident batches."""
    transform = augmentation()
    transform.set_random_state(seed=0)
    x = torch.from_numpy(np.ascontiguousarray(images[:batch])).to(device)
    augment_batch(transform, x)  # warm-up
    sync(device)
    started = time.perf_counter()
    for _ in range(batches):
        augment_batch(transform, x)
    sync(device)
    return batches * batch / (time.perf_counter() - started)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.1f}  ({min(values):.1f}-{max(values):.1f})"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--batch-sizes", default="16,64", help="comma list of batch sizes (the loader uses the largest)")
    ap.add_argument("--workers", default="0,1,2", help="comma list of loader worker counts")
    ap.add_argument("--patients", type=int, default=32, help="synthetic patients (2 images each)")
    ap.add_argument("--steps", type=int, default=4, help="model steps to time per round")
    ap.add_argument("--samples", type=int, default=256, help="loader samples to time per setting and round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians and min-max reported)")
    ap.add_argument("--threads", type=int, default=None, help="PyTorch threads for the model (default: all CPUs)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--gpu-host-cpus", type=int, default=8, help="CPUs of the GPU host for the estimate (default 8)")
    ap.add_argument("--gpu-samples-per-s", type=float, default=1000.0,
                    help="DenseNet121 training rate at batch 64 on a GPU, for the estimate without CUDA")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads or available_cpus())
    device = resolve_device(args.device)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    loader_batch = max(batches)
    worker_counts = [int(w) for w in args.workers.split(",")]
    print(f"CPUs {available_cpus()}, torch threads {torch.get_num_threads()}, torch {torch.__version__}, "
          f"device {device}{' (' + torch.cuda.get_device_name() + ')' if device.type == 'cuda' else ''}, "
          f"image {args.image_size} px; load average {load()} (shared machine)", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-train-input-") as tmp:
        root = Path(tmp)
        generate_dataset(root / "synth", patients=args.patients, size=256, seed=0, progress=False, workers=1)
        link_images(root / "synth", root / "images")
        records = synth_records(root / "synth")
        ids = [r["sop_instance_uid"] for r in records]
        target = np.array([[float(e["present"]) for e in r["labels"]] for r in records], dtype=np.float32)
        cache = ImageCache(root / "cache", Preprocessing(size=args.image_size))
        started = time.perf_counter()
        cached = cache.get_many(ids, DirectorySource(root / "images"), workers=1)
        fill = len(ids) / (time.perf_counter() - started)
        images = load_arrays(cached)
        print(f"cache fill (decode + window + resize + write, once): {fill:8.1f} images/s ({len(ids)} images)")

        settings: dict[str, Any] = {f"model, batch {b} ({device.type})":
                                    (lambda b=b: model_rate(target.shape[1], args.image_size, batch=b,
                                                            steps=args.steps, device=device)) for b in batches}
        for workers in worker_counts:
            settings[f"loader, {workers} workers, batch {loader_batch}"] = (
                lambda workers=workers: loader_rate(images, target, batch=loader_batch, workers=workers,
                                                    samples=args.samples))
        settings[f"augment on {device.type}, batch {loader_batch}"] = (
            lambda: device_augment_rate(images, batch=loader_batch, device=device, batches=3))
        rates: dict[str, list[float]] = {name: [] for name in settings}
        for round_number in range(args.rounds):
            for name, measure in settings.items():
                rates[name].append(measure())
                print(f"  round {round_number + 1}: {name:<34} {rates[name][-1]:8.1f} samples/s", flush=True)

    print(f"\n{'setting':<36}{'median samples/s (min-max)':>30}")
    for name, values in rates.items():
        print(f"{name:<36}{spread(values):>30}")
    median = {name: statistics.median(values) for name, values in rates.items()}
    model = median[f"model, batch {loader_batch} ({device.type})"]
    loaders = {w: median[f"loader, {w} workers, batch {loader_batch}"] for w in worker_counts}
    best_workers = max(loaders, key=loaders.get)
    print(f"\nbest loader ({best_workers} workers) / model at batch {loader_batch} on {device.type}: "
          f"{loaders[best_workers] / model:.1f}x (goal >= 2x); load average {load()}")
    if device.type != "cuda":
        per_worker = max((loaders[w] / w for w in loaders if w), default=loaders[best_workers])
        workers = max(1, min(args.gpu_host_cpus - 1, MAX_LOADER_WORKERS))
        estimate = per_worker * workers
        print(f"GPU estimate (no CUDA here): {per_worker:.0f} samples/s per worker measured x {workers} workers "
              f"on a {args.gpu_host_cpus}-CPU GPU host = {estimate:.0f} samples/s, vs ~{args.gpu_samples_per_s:.0f} "
              f"for the GPU step: {estimate / args.gpu_samples_per_s:.1f}x (assumes workers scale with cores, "
              f"which 2 shared CPUs cannot show); augmentation on the GPU instead: --augment-on device")
    return 0


if __name__ == "__main__":
    sys.exit(main())
