"""``python -m training COMMAND``: one argparse sub-command per module, as in :mod:`labeling.cli`.

Each command module exposes ``register(subparsers)``; modules are imported lazily by name so a
missing optional dependency (or a module not written yet) only affects its own command.
"""

from __future__ import annotations

import argparse

from labeling.cli import build_command_parser, run_command

# Order is the order shown in --help.
COMMAND_MODULES = (
    "training.train",       # train, evaluate
    "training.inference",   # predict
    "training.writeback",   # writeback
    "training.active",      # order (pre-labels + uncertainty-first order for the next job)
    "training.sagemaker",   # sagemaker train|deploy|delete (SageMaker jobs and endpoints)
)


def build_parser() -> argparse.ArgumentParser:
    return build_command_parser(
        "python -m training",
        "dicom-annotate: train and evaluate models on consolidated labels, predict, write predictions "
        "back to Orthanc, order the next labeling job.", COMMAND_MODULES, one_line=True)


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)
