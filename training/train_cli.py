"""``python -m training train|evaluate``: the command line of :mod:`training.train` (flags, hyperparameters,
errors); also the image-source and hyperparameter flags the other commands and the SageMaker entry reuse."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from labeling.cli import bad_input
from training.dataset import DEFAULT_CACHE_DIR, DatasetError
from training.volume import parse_volume_size
from training.train import (GPU_AUGMENT_BELOW_CPUS, MAX_LOADER_WORKERS, TrainConfig, evaluate_model,
                            train_from_manifest)



def add_image_source_arguments(parser: argparse.ArgumentParser, *, cache: bool = True) -> None:
    """``--images DIR`` or the Orthanc connection flags of :mod:`labeling.orthanc.connection`
    (and ``--cache-dir`` for the commands that use the preprocessed-image cache)."""
    from labeling.orthanc.connection import add_connection_arguments

    parser.add_argument("--images", type=Path, metavar="DIR",
                        help="directory of <orthanc id>.dcm files (instead of fetching from Orthanc)")
    if cache:
        parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR,
                            help=f"preprocessed-image cache (default: {DEFAULT_CACHE_DIR})")
    add_connection_arguments(parser)


def orthanc_client_from_args(args: argparse.Namespace) -> Any:
    """An OrthancClient from the connection flags/variables, or None when ``--images`` is given."""
    if getattr(args, "images", None):
        return None
    from labeling.orthanc.connection import connection_from_args
    from labeling.orthanc.client import OrthancClient

    return OrthancClient.from_connection(connection_from_args(args))


def add_hyperparameter_arguments(parser: argparse.ArgumentParser) -> None:
    """The :class:`TrainConfig` fields as ``--kebab-case`` flags (SageMaker passes them so too)."""
    from labeling.cli import non_negative_int, positive_int

    d = TrainConfig()
    g = parser.add_argument_group("hyperparameters")
    g.add_argument("--epochs", type=positive_int, default=d.epochs, help=f"maximum epochs (default {d.epochs})")
    g.add_argument("--batch-size", type=positive_int, default=d.batch_size, help=f"(default {d.batch_size})")
    g.add_argument("--learning-rate", type=float, default=d.learning_rate, help=f"AdamW (default {d.learning_rate})")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"AdamW (default {d.weight_decay})")
    g.add_argument("--patience", type=positive_int, default=d.patience,
                   help=f"early stopping: epochs without a better validation macro AUROC (default {d.patience})")
    g.add_argument("--image-size", type=positive_int, default=d.image_size,
                   help=f"model input size in pixels (default {d.image_size})")
    g.add_argument("--window", choices=("file", "minmax"), default=d.window,
                   help="VOI window: the file's WindowCenter/Width, or the image's robust min-max (default file)")
    g.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help=f"share of patients held out for validation (default {d.val_fraction})")
    g.add_argument("--seed", type=non_negative_int, default=d.seed, help=f"(default {d.seed})")
    g.add_argument("--no-augment", dest="augment", action="store_false", help="train without augmentation")
    g.add_argument("--confidence-weighting", action="store_true",
                   help="weight each label's loss by its consolidated confidence")
    g.add_argument("--num-workers", type=non_negative_int, default=None,
                   help="data-loader worker processes (default: none on CPU; on CUDA all CPUs but one, at most "
                        f"{MAX_LOADER_WORKERS})")
    g.add_argument("--augment-on", choices=("auto", "loader", "device"), default=d.augment_on,
                   help="where augmentation runs: loader workers, or the GPU on batches (default auto: the "
                        f"GPU when CUDA is used and fewer than {GPU_AUGMENT_BELOW_CPUS} CPUs are available)")
    g.add_argument("--threads", type=positive_int, default=None, help="PyTorch CPU threads (default: all CPUs)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="(default auto)")
    g.add_argument("--volume-size", type=parse_volume_size, default=d.volume_size, metavar="D,H,W",
                   help="series labels (manifest --level series): the grid each volume is resampled to, "
                        f"slices,rows,columns (default {','.join(map(str, d.volume_size))})")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                       weight_decay=args.weight_decay, patience=args.patience, image_size=args.image_size,
                       window=args.window, val_fraction=args.val_fraction, seed=args.seed,
                       augment=args.augment, confidence_weighting=args.confidence_weighting,
                       num_workers=args.num_workers, threads=args.threads, device=args.device,
                       augment_on=args.augment_on, volume_size=tuple(args.volume_size))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        description="Train MONAI DenseNet121 (multi-label) on the consolidated labels of a GT-format "
                    "output manifest (portal or Ground Truth); writes model.pt, model.json, metrics.json, "
                    "report.html and plots into --out.")
    p.add_argument("--manifest", type=Path, required=True, help="output manifest (JSON Lines)")
    p.add_argument("--label-attribute", help="the label attribute name (inferred when the manifest has one)")
    p.add_argument("--out", type=Path, required=True, help="output directory (created; must be empty)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out once training succeeded")
    add_image_source_arguments(p)
    add_hyperparameter_arguments(p)
    p.set_defaults(func=run_train)

    e = subparsers.add_parser(
        "evaluate",
        description="Predict the labeled images of an output manifest with a saved model and write "
                    "metrics.json, report.html and plots into --out.")
    e.add_argument("--model", type=Path, required=True, help="directory with model.pt + model.json")
    e.add_argument("--manifest", type=Path, required=True, help="output manifest (JSON Lines)")
    e.add_argument("--label-attribute", help="the label attribute name (inferred when the manifest has one)")
    e.add_argument("--out", type=Path, required=True, help="report directory (created; must be empty)")
    e.add_argument("--force", action="store_true", help="replace a non-empty --out")
    e.add_argument("--only-validation", action="store_true",
                   help="evaluate only the images of the model's validation split (split.json)")
    add_image_source_arguments(e)
    e.set_defaults(func=run_evaluate)


def _errors() -> tuple[type[BaseException], ...]:
    from labeling.orthanc.connection import ConnectionError_
    from labeling.orthanc.client import OrthancError
    from labeling.outdir import OutputDirError

    errors: list[type[BaseException]] = [DatasetError, ConnectionError_, OrthancError, OutputDirError, ValueError]
    try:
        from labeling.gt.output_manifest import OutputManifestError

        errors.insert(0, OutputManifestError)
    except ImportError:
        pass
    return tuple(errors)


def run_train(args: argparse.Namespace) -> int:
    from labeling.outdir import sigterm_as_interrupt, staged_output_dir

    try:
        config = config_from_args(args)
        client = orthanc_client_from_args(args)
        with sigterm_as_interrupt(), staged_output_dir(args.out, force=args.force) as staging:
            metrics = train_from_manifest(args.manifest, staging, label_attribute=args.label_attribute,
                                          images_dir=args.images, orthanc=client, config=config,
                                          cache_dir=args.cache_dir)
    except _errors() as exc:
        raise bad_input(exc) from exc
    print(f"macro AUROC on held-out patients: {metrics['macro_auroc']}  "
          f"({metrics['n_train']} training / {metrics['n_val']} validation images, "
          f"{metrics['training_seconds']} s on {metrics['device']})")
    print(f"report: {Path(args.out) / 'report.html'}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from labeling.outdir import sigterm_as_interrupt, staged_output_dir

    try:
        client = orthanc_client_from_args(args)
        with sigterm_as_interrupt(), staged_output_dir(args.out, force=args.force) as staging:
            metrics = evaluate_model(args.model, args.manifest, staging, label_attribute=args.label_attribute,
                                     images_dir=args.images, orthanc=client, cache_dir=args.cache_dir,
                                     only_validation=args.only_validation)
    except _errors() as exc:
        raise bad_input(exc) from exc
    print(f"macro AUROC: {metrics['macro_auroc']} on {metrics['n_val']} images")
    print(f"report: {Path(args.out) / 'report.html'}")
    return 0
