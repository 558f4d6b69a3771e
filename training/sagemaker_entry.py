"""SageMaker training entry point: the same :func:`training.train.train_from_manifest` as the CLI.

The SageMaker PyTorch framework container runs ``python training/sagemaker_entry.py --epochs 40 ...``
(hyperparameters as ``--kebab-case value`` arguments; booleans arrive as ``true``/``false``) with
the SageMaker environment (AWS docs, "SageMaker training toolkit: environment variables"):

* ``SM_CHANNEL_MANIFEST`` — the channel holding the output manifest (one file; ``.manifest``,
  ``.jsonl`` or ``.json``, or the only file there);
* ``SM_CHANNEL_IMAGES`` — the channel of ``<orthanc id>.dcm`` files (the GT pre-label staging
  prefix, or a copy); without it the images are read from Orthanc with ``ORTHANC_URL`` and
  ``ORTHANC_SECRET_ARN`` (or user/password variables), as the inference handler does;
* ``SM_MODEL_DIR`` — gets ``model.pt``, ``model.json``, ``split.json`` (packed into model.tar.gz,
  what :mod:`training.inference` loads);
* ``SM_OUTPUT_DATA_DIR`` — gets ``metrics.json``, ``report.html`` and the plots (output.tar.gz);
* ``SM_HOSTS`` / ``SM_CURRENT_HOST`` — training is single-node: with several hosts only the first
  trains and the others exit at once (more instances would not make this model train faster).

The source directory must contain both ``training/`` and ``labeling/`` (the manifest reader and
the Orthanc client); this file puts its parent's parent on ``sys.path`` for that.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Mapping, Optional, Sequence

if __package__ in (None, ""):  # run as a script by the SageMaker container
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MANIFEST_SUFFIXES = (".manifest", ".jsonl", ".json")
_BOOL_FLAGS = {"--augment": ("", "--no-augment"), "--confidence-weighting": ("--confidence-weighting", "")}


def normalise_hyperparameters(argv: Sequence[str]) -> list[str]:
    """SageMaker passes every hyperparameter with a value: ``--augment false`` → ``--no-augment``,
    ``--confidence-weighting true`` → ``--confidence-weighting``; other arguments unchanged."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, _, inline = arg.partition("=")
        if name in _BOOL_FLAGS:
            if inline:
                value, i = inline, i + 1
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value, i = argv[i + 1], i + 2
            else:
                value, i = "true", i + 1
            truthy = value.strip().lower() in ("1", "true", "yes", "on")
            if value.strip().lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise SystemExit(f"sagemaker_entry: {name}: expected true or false, got {value!r}")
            flag = _BOOL_FLAGS[name][0 if truthy else 1]
            if flag:
                out.append(flag)
            continue
        out.append(arg)
        i += 1
    return out


def find_manifest(channel: str | Path) -> Path:
    """The one manifest file of the manifest channel; SystemExit names the channel when unclear."""
    root = Path(channel)
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    preferred = [p for p in files if p.suffix in MANIFEST_SUFFIXES]
    candidates = preferred or files
    if len(candidates) != 1:
        raise SystemExit(f"SM_CHANNEL_MANIFEST {root}: expected one manifest file, found "
                         f"{len(candidates)}: {[p.name for p in candidates][:5]}")
    return candidates[0]


def build_parser() -> argparse.ArgumentParser:
    from training.train_cli import add_hyperparameter_arguments

    parser = argparse.ArgumentParser(prog="sagemaker_entry.py", description=__doc__.splitlines()[0])
    parser.add_argument("--label-attribute", default=None, help="label attribute (inferred when omitted)")
    add_hyperparameter_arguments(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None, environ: Mapping[str, str] = os.environ) -> int:
    from training.train import train_from_manifest
    from training.train_cli import config_from_args

    args = build_parser().parse_args(normalise_hyperparameters(list(sys.argv[1:] if argv is None else argv)))
    hosts = json.loads(environ.get("SM_HOSTS", "[]") or "[]")
    current = environ.get("SM_CURRENT_HOST")
    if len(hosts) > 1 and current != sorted(hosts)[0]:
        print(f"{current}: single-node training runs on {sorted(hosts)[0]}; nothing to do here")
        return 0
    channel = environ.get("SM_CHANNEL_MANIFEST")
    if not channel:
        raise SystemExit("SM_CHANNEL_MANIFEST is not set: give the training job a 'manifest' channel")
    manifest = find_manifest(channel)
    model_dir = Path(environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    report_dir = Path(environ.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"))
    images = environ.get("SM_CHANNEL_IMAGES")
    orthanc = None
    if not images:
        from training.inference import orthanc_from_env

        orthanc = orthanc_from_env(environ)
    config = config_from_args(args)
    cache = Path(tempfile.mkdtemp(prefix="image-cache-"))
    metrics = train_from_manifest(manifest, model_dir, label_attribute=args.label_attribute, images_dir=images,
                                  orthanc=orthanc, config=config, cache_dir=cache, report_dir=report_dir,
                                  progress=False)
    # SageMaker metric definitions can scrape this line from the log
    print(f"validation macro AUROC: {metrics['macro_auroc']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
