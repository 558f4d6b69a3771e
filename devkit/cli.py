"""``python -m devkit``: the development kit's commands (synthetic data, sample files, the demo loop).

Same error style and exit codes as ``python -m labeling`` (:mod:`labeling.cli`, whose machinery this
uses); only the module of the command being run is imported.
"""

from __future__ import annotations

import argparse
from typing import Mapping, Optional

from labeling.cli import Command, build_command_parser, run_command

# Order is the order shown in --help.
COMMANDS: Mapping[str, Command] = {
    "synth": Command("devkit.synth", "generate a synthetic chest X-ray DICOM dataset with ground truth "
                                     "(or CT-like series with --series)"),
    "samples": Command("devkit.samples", "copy pydicom's real-world sample DICOM files (compressed, "
                                         "multi-frame, SR...) to a folder"),
    "demo": Command("devkit.demo", "run the local end-to-end loop (what `make demo` runs)"),
}
COMMAND_MODULES = tuple(dict.fromkeys(command.module for command in COMMANDS.values()))


def build_parser(argv: Optional[list[str]] = None) -> argparse.ArgumentParser:
    return build_command_parser("python -m devkit",
                                "dicom-annotate's development kit: synthetic data, samples, the demo loop.",
                                COMMANDS, argv)


def main(argv: Optional[list[str]] = None) -> int:
    return run_command(build_parser, argv)
