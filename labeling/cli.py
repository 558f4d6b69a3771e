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


def int_at_least(minimum: int):
    """An argparse type: an integer of at least ``minimum`` (one line naming the bad value otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = "positive_int" if minimum == 1 else f"int_at_least_{minimum}"
    return parse


positive_int = int_at_least(1)  # counts: workers, limits, epochs
non_negative_int = int_at_least(0)  # seeds, optional worker processes


def one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Make argparse report a bad option as one line (``PROG: error: ...``) and exit 2.

    argparse prints the whole usage first; the brief for this CLI is one clear line naming the
    input, and ``--help`` still shows the usage.
    """

    def error(message: str) -> None:
        parser.exit(2, f"{parser.prog}: error: {message} (see --help)\n")

    parser.error = error  # type: ignore[method-assign]


def build_command_parser(prog: str, description: str, modules: tuple[str, ...], *,
                         one_line: bool = False) -> argparse.ArgumentParser:
    """A parser with one sub-command per module of ``modules`` (each has ``register(subparsers)``).

    A module that does not exist (a command not built yet) is left out; any other import error is
    raised. ``one_line`` makes every sub-command report a bad option in one line.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # command not built yet
            raise
        module.register(subparsers)
    if one_line:
        for action in subparsers.choices.values():
            one_line_errors(action)
    return parser


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command's ``func``; Ctrl-C exits 130 with one line."""
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    return build_command_parser("python -m labeling",
                                "dicom-annotate: keep DICOM in Orthanc, label it, consolidate, train.",
                                COMMAND_MODULES)


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)
