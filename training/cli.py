"""``python -m training COMMAND``: one argparse sub-command per module, as in :mod:`labeling.cli`.

Each command module exposes ``register(subparsers)``; only the module of the command being run is
imported (torch and MONAI take seconds), so the names and help lines live in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
from typing import Optional

from labeling.cli import Command, build_command_parser, run_command

# Order is the order shown in --help.
COMMANDS = {
    "train": Command("training.train_cli", "train a multi-label model on an output manifest"),
    "evaluate": Command("training.train_cli", "re-run the evaluation report of a model on a labeled manifest"),
    "predict": Command("training.inference", "predict images with a trained model (JSON Lines out)"),
    "writeback": Command("training.writeback", "store predictions in Orthanc (DICOM SR with the model as observer)"),
    "order": Command("training.active", "pre-label a manifest with predictions and sort it most-uncertain first"),
    "sagemaker": Command("training.sagemaker", "SageMaker: train on an output manifest, deploy/delete an endpoint, "
                                               "status"),
}
COMMAND_MODULES = tuple(dict.fromkeys(command.module for command in COMMANDS.values()))


def build_parser(argv: Optional[list[str]] = None) -> argparse.ArgumentParser:
    return build_command_parser(
        "python -m training",
        "dicom-annotate: train and evaluate models on consolidated labels, predict, write predictions "
        "back to Orthanc, order the next labeling job.", COMMANDS, argv)


def main(argv: Optional[list[str]] = None) -> int:
    return run_command(build_parser, argv)
