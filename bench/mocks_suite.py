"""Pulumi mocks test suite: wall time of the same pytest selection in two trees, interleaved.

Runs ``pytest -q -p no:cacheprovider <files>`` as a whole process in the baseline tree and in ours,
alternating (baseline, ours, baseline, …) so both see the same machine load, and prints per tree
the median and min–max wall time and CPU time (user + system of the pytest process: on a shared
machine the steadier of the two), the tests passed and how many times the Pulumi program ran
(``run_program`` calls, counted by a wrapper), with the 1-minute load average before each round.

Make a baseline tree from another commit without touching any worktree::

    mkdir /tmp/base && git archive main | tar -x -C /tmp/base && ln -s "$PWD/.venv" /tmp/base/.venv
    .venv/bin/python bench/mocks_suite.py --baseline /tmp/base --rounds 3

Both trees use this tree's .venv. Default files: the Pulumi/policy/plan tests (tests/unit).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = ("test_config", "test_network", "test_orthanc_service", "test_portal_component", "test_labeling_bundle",
         "test_plan", "test_viewer_assets_cdn", "test_policy_rules", "test_policy_pack", "test_moved_resources")
# Counts program runs in the pytest process without changing either tree.
COUNTER = """
import atexit, importlib, os
try:  # components/checks/offline.py, or components/offline.py in trees before the checks package
    offline = importlib.import_module("components.checks.offline")
except ImportError:
    offline = importlib.import_module("components.offline")
_real, _n = offline.run_program, [0]
def counted(*a, **k):
    _n[0] += 1
    return _real(*a, **k)
offline.run_program = counted
atexit.register(lambda: open(os.environ["RUNS_FILE"], "w").write(str(_n[0])))
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(tree: Path, files: list[str]) -> tuple[float, float, str, int]:
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "sitecustomize.py").write_text(COUNTER)
        runs_file = Path(scratch) / "runs"
        env = {**os.environ, "PYTHONPATH": f"{scratch}:{tree}", "RUNS_FILE": str(runs_file),
               "PYTHONDONTWRITEBYTECODE": "1"}
        # A module one tree lacks (a test added since) runs in the tree that has it.
        paths = [f"tests/unit/{f}.py" for f in files if (tree / "tests" / "unit" / f"{f}.py").is_file()]
        start, cpu = time.perf_counter(), _children_cpu()
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths],
                              cwd=tree, env=env, capture_output=True, text=True)
        elapsed, cpu = time.perf_counter() - start, _children_cpu() - cpu
        summary = (done.stdout.strip().splitlines() or ["?"])[-1]
        runs = int(runs_file.read_text()) if runs_file.exists() else -1
        if done.returncode != 0:
            print(f"  {tree}: pytest failed: {summary}", file=sys.stderr)
        return elapsed, cpu, re.sub(r" in [\d.]+s.*", "", summary), runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, type=Path, help="the other tree (e.g. main, extracted)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--files", nargs="*", default=list(FILES), help="test modules under tests/unit")
    args = parser.parse_args(argv)
    if not (args.baseline / "tests" / "unit").is_dir():
        parser.error(f"--baseline {args.baseline}: no tests/unit there")
    times: dict[str, list[float]] = {"baseline": [], "ours": []}
    cpus: dict[str, list[float]] = {"baseline": [], "ours": []}
    info: dict[str, tuple[str, int]] = {}
    for round_ in range(1, args.rounds + 1):
        for label, tree in (("baseline", args.baseline), ("ours", ROOT)):
            load = os.getloadavg()[0]
            elapsed, cpu, summary, runs = run(tree, args.files)
            times[label].append(elapsed)
            cpus[label].append(cpu)
            info[label] = (summary, runs)
            print(f"round {round_} {label:8s} {elapsed:6.1f} s wall {cpu:6.1f} s CPU  load {load:4.1f}  {summary}, "
                  f"{runs} program runs", flush=True)
    print(f"machine: {os.cpu_count()} CPUs, 1-min load average now {os.getloadavg()[0]:.1f} (shared when > 1)")
    for label, values in times.items():
        summary, runs = info[label]
        cpu = cpus[label]
        print(f"{label:8s} wall median {statistics.median(values):5.1f} s (min {min(values):.1f}, max {max(values):.1f})"
              f"  CPU median {statistics.median(cpu):5.1f} s (min {min(cpu):.1f}, max {max(cpu):.1f})"
              f"  {summary}, {runs} program runs")
    for name, series in (("wall", times), ("CPU", cpus)):
        ratio = statistics.median(series["ours"]) / statistics.median(series["baseline"])
        print(f"ours / baseline (median {name} time): {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
