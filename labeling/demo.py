"""``python -m labeling demo`` — the local loop behind ``make demo``.

Runs the same commands a user would type, in order, against a private local stack:
``local up`` → ``synth`` (chest-radiograph-like DX with ground truth) → ``samples`` (pydicom's
real-world files) → ``upload`` → ``manifest``, then says where to look. Rerunning reuses the
stack and the data already generated; Orthanc answers ``AlreadyStored`` for what it has.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Callable

from labeling.local_stack import DEFAULT_WORKDIR, LocalStack, LocalStackError

DEMO_SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "chest-xray.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the local end-to-end loop (what `make demo` runs)",
        description="Start PostgreSQL + Orthanc on loopback, generate and load a dataset, build a "
                    "labeling manifest, and print where to look.")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help=f"stack and data directory (default: {DEFAULT_WORKDIR})")
    parser.add_argument("--patients", type=int, default=40, help="synthetic patients (default: 40)")
    parser.add_argument("--size", type=int, default=256, help="synthetic image size in pixels (default: 256)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic dataset seed (default: 0)")
    parser.add_argument("--schema", type=Path, default=DEMO_SCHEMA, help="label schema for the manifest")
    parser.set_defaults(func=run)


def _step(title: str, argv: list[str], main: Callable[[list[str]], int]) -> int:
    print(f"\n== {title}: python -m labeling {' '.join(argv)}", flush=True)
    return main(argv)


def run(args: argparse.Namespace) -> int:
    from labeling.cli import main

    workdir = Path(args.workdir).resolve()
    data = workdir / "data"
    synth_dir, samples_dir = data / "synth", data / "samples"
    manifest = workdir / "manifest.jsonl"

    print(f"== local stack in {workdir}", flush=True)
    stack = LocalStack(workdir)
    try:
        info = stack.up()
    except LocalStackError as exc:
        print(f"error: {exc}")
        return 2
    print(f"Orthanc {info.url} ({'already running' if info.already_running else 'started'}), "
          f"PostgreSQL on 127.0.0.1:{info.postgres_port}")
    conn = stack.connection()
    # The sub-commands read the connection the documented way: ORTHANC_* variables.
    os.environ.update(ORTHANC_URL=conn.url, ORTHANC_USERNAME=conn.username, ORTHANC_PASSWORD=conn.password)

    if (synth_dir / "dataset.json").is_file():
        print(f"\n== synthetic dataset: reusing {synth_dir}")
    elif _step("synthetic dataset", ["synth", "--out", str(synth_dir), "--patients", str(args.patients),
                                     "--size", str(args.size), "--seed", str(args.seed)], main) != 0:
        return 2
    if samples_dir.is_dir() and any(samples_dir.iterdir()):
        print(f"\n== pydicom samples: reusing {samples_dir}")
    elif _step("pydicom samples", ["samples", "--out", str(samples_dir), "--distinct-uids"], main) != 0:
        return 2

    upload_report = workdir / "upload-report.json"
    upload_rc = _step("upload", ["upload", str(synth_dir), str(samples_dir), "--report", str(upload_report)],
                      main)
    # A rejected sample (a syntax Orthanc 1.10 refuses) is listed by upload; the loop goes on.
    manifest_report = workdir / "manifest-report.json"
    if _step("manifest", ["manifest", "--schema", str(args.schema), "--modality", "DX",
                          "--out", str(manifest), "--report", str(manifest_report)], main) != 0:
        return 2

    lines = sum(1 for _ in manifest.open())
    totals = json.loads(upload_report.read_text()).get("totals", {}) if upload_report.is_file() else {}
    print("\n== done")
    print(f"Orthanc Explorer   {info.explorer_url}  (user {conn.username}; password in {info.env_file})")
    print(f"connection         source {info.env_file}")
    print(f"uploaded           {totals}  report: {upload_report}")
    print(f"manifest           {manifest} ({lines} lines)  report: {manifest_report}")
    print(f"ground truth       {synth_dir / 'ground_truth.jsonl'}")
    print(f"stop the stack     make demo-down   (or python -m labeling local down --workdir {workdir})")
    return 0 if upload_rc == 0 else upload_rc
