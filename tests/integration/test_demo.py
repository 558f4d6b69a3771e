"""`make demo`'s loop end to end on its own stack: exit 0 and a manifest built from a live Orthanc."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import sys
from pathlib import Path

import pytest

from labeling.local_stack import LocalStack
from labeling.manifest import read_manifest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_the_local_loop():
    # Under /tmp like a user's checkout: pytest's tmp_path is private to root, and the PostgreSQL
    # server runs as the postgres user.
    workdir = Path(tempfile.mkdtemp(prefix="dicom-annotate-demo-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORTHANC_")}
    try:
        run = subprocess.run([sys.executable, "-m", "labeling", "demo", "--workdir", str(workdir),
                              "--patients", "3", "--size", "64"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        lines = read_manifest(workdir / "manifest.jsonl")
        truth = [json.loads(x) for x in (workdir / "data" / "synth" / "ground_truth.jsonl").open()]
        # Every synthetic DX image (3 patients x 2 studies) is in the manifest, and only those.
        assert len(lines) == len(truth) == 6
        assert {line.sop_instance_uid for line in lines} == {t["sop_instance_uid"] for t in truth}
        assert "Orthanc Explorer" in run.stdout and "manifest.jsonl (6 lines)" in run.stdout
        upload = json.loads((workdir / "upload-report.json").read_text())
        assert upload["totals"]["rejected"] == 0 and upload["totals"]["failed"] == 0
        # A second run reuses the stack and data: everything is already stored.
        again = subprocess.run([sys.executable, "-m", "labeling", "demo", "--workdir", str(workdir)],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stdout[-3000:]
        assert "already running" in again.stdout
        totals = json.loads((workdir / "upload-report.json").read_text())["totals"]
        assert totals["stored"] == 0 and totals["already_stored"] == upload["totals"]["files"]
    finally:
        LocalStack(workdir).down()
        shutil.rmtree(workdir, ignore_errors=True)
