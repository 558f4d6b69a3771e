"""Command-line entry point: one argparse sub-command per module.

Each command module exposes ``register(subparsers)`` which adds its parser and sets
``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an exit code).
Modules are imported lazily by name so a missing optional dependency only affects its command.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Order is the order shown in --help.
COMMAND_MODULES = (
    "labeling.local_stack",   # local up|down|status
    "labeling.upload",        # upload PATH...
    "labeling.manifest",      # manifest --schema ...
    "labeling.synth",         # synth --out DIR ...
    "labeling.samples",       # samples --out DIR (pydicom's shipped files)
    "labeling.demo",          # demo: the local loop behind `make demo`
    "labeling.gt",            # gt render|create-job|status|fetch-output (SageMaker Ground Truth)
    "labeling.portal.cli",    # portal serve|migrate|user|job|export|sr (the labeling portal)
)


def positive_int(text: str) -> int:
    """argparse type for counts (workers, limits): an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Make argparse report a bad option as one line (``PROG: error: ...``) and exit 2.

    argparse prints the whole usage first; the brief for this CLI is one clear line naming the
    input, and ``--help`` still shows the usage.
    """

    def error(message: str) -> None:
        parser.exit(2, f"{parser.prog}: error: {message} (see --help)\n")

    parser.error = error  # type: ignore[method-assign]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m labeling",
        description="dicom-annotate: keep DICOM in Orthanc, label it, consolidate, train.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # command not built yet
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
