"""Training input benchmark: data-loader throughput vs model step throughput, on CPU.

The question: does the model wait for data? The loader path is the one training uses: a synthetic
DX dataset (``labeling.synth``) read through :class:`training.dataset.ImageCache` (decoded,
windowed, resized once, cached as .npy), stacked in memory, and served by
:func:`training.train.make_loader` with the training augmentation (MONAI flip, rotation, zoom,
intensity, noise), with 0, 1, 2 ... worker processes. The model path is one DenseNet121 training
step (forward, BCE-with-logits, backward, AdamW) on batches of the same shape.

Prints samples/s for each, and the ratio loader / model (goal: >= 2, so the loader is never the
bottleneck; a ratio below 1 means the CPU spends its time on augmentation instead of the model).
The first cache fill (DICOM decode) is timed too, once, for information.

Run: ``.venv/bin/python bench/train_input.py [--image-size 128] [--batch-size 16] [--workers 0,1,2]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from labeling.synth import generate_dataset  # noqa: E402
from training.dataset import DirectorySource, ImageCache, load_arrays  # noqa: E402
from training.demo_labels import link_images, synth_records  # noqa: E402
from training.imaging import Preprocessing  # noqa: E402
from training.train import available_cpus, build_model, make_loader, weighted_bce  # noqa: E402


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


def model_rate(n_labels: int, size: int, *, batch: int, steps: int) -> float:
    """Training samples per second of DenseNet121 (forward + backward + AdamW step)."""
    model = build_model(n_labels)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 1, size, size)
    y = (torch.rand(batch, n_labels) > 0.5).float()
    w = torch.ones_like(y)

    def step() -> None:
        loss = weighted_bce(model(x), y, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", default="0,1,2", help="comma list of loader worker counts")
    ap.add_argument("--patients", type=int, default=16, help="synthetic patients (2 images each)")
    ap.add_argument("--steps", type=int, default=6, help="model steps to time")
    ap.add_argument("--samples", type=int, default=256, help="loader samples to time per setting")
    ap.add_argument("--threads", type=int, default=None, help="PyTorch threads (default: all CPUs)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads or available_cpus())
    print(f"CPUs {available_cpus()}, torch threads {torch.get_num_threads()}, torch {torch.__version__}, "
          f"image {args.image_size} px, batch {args.batch_size}")

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

        model = model_rate(target.shape[1], args.image_size, batch=args.batch_size, steps=args.steps)
        print(f"model: DenseNet121 training step         {model:8.1f} samples/s")
        best = 0.0
        for workers in (int(w) for w in args.workers.split(",")):
            rate = loader_rate(images, target, batch=args.batch_size, workers=workers, samples=args.samples)
            best = max(best, rate)
            print(f"loader: cached + augmented, {workers} workers  {rate:8.1f} samples/s   "
                  f"ratio loader/model {rate / model:6.1f}x")
        verdict = "OK" if best >= 2 * model else "BELOW GOAL"
        print(f"best ratio {best / model:.1f}x (goal >= 2x): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
