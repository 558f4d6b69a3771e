"""``python -m training COMMAND``: one argparse sub-command per module, as in :mod:`labeling.cli`.

Each command module exposes ``register(subparsers)``; modules are imported lazily by name so a
missing optional dependency (or a module not written yet) only affects its own command.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from labeling.cli import one_line_errors

# Order is the order shown in --help.
COMMAND_MODULES = (
    "training.train",       # train, evaluate
    "training.inference",   # predict
    "training.writeback",   # writeback
    "training.active",      # order (pre-labels + uncertainty-first order for the next job)
    "training.sagemaker",   # sagemaker train|deploy|delete (SageMaker jobs and endpoints)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="dicom-annotate: train and evaluate models on consolidated labels, predict, "
                    "write predictions back to Orthanc, order the next labeling job.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # command not built yet
            raise
        module.register(subparsers)
    for action in subparsers.choices.values():
        one_line_errors(action)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
