"""CLI start-up benchmark: the same commands from two checkouts, interleaved, N runs each.

    .venv/bin/python bench/cli_startup.py --baseline /path/to/old/checkout [--runs 10]

Each command is started as a fresh ``python -m …`` process (what a user pays per command) from the
baseline checkout and from this one, alternating, so load on a shared machine hits both alike.
Prints median, min and max wall time per command and checkout, and the load average before/after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
COMMANDS = (
    ("labeling", "upload", "--help"),
    ("labeling", "local", "status", "--workdir", "/nonexistent-bench-workdir"),  # a real small command
    ("labeling", "--help"),
    ("training", "train", "--help"),
)


def once(root: Path, argv: tuple[str, ...]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", *argv], cwd=root, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(root)})
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="checkout to compare with (e.g. main)")
    parser.add_argument("--runs", type=int, default=10, help="runs per command and checkout (default 10)")
    args = parser.parse_args(argv)
    print(f"load average before: {os.getloadavg()}  (shared machine: compare medians, not single runs)")
    for command in COMMANDS:
        times: dict[str, list[float]] = {"baseline": [], "ours": []}
        for run in range(args.runs):
            order = [("baseline", args.baseline), ("ours", HERE)]
            for name, root in (order if run % 2 == 0 else order[::-1]):
                times[name].append(once(root, command))
        print(f"python -m {' '.join(command)}")
        for name, values in times.items():
            print(f"  {name:8s} median {statistics.median(values):.3f} s  min {min(values):.3f}  "
                  f"max {max(values):.3f}  (n={len(values)})")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
