"""The notebook of the labeling bundle's notebook instance, executed end to end with nbclient.

Small settings (a 16-patient synthetic set, 32-pixel inputs, 3 epochs, 1 thread) keep it well
under a minute on CPU; the same cells run with the defaults on the notebook instance.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "training" / "notebooks" / "walkthrough.ipynb"


def test_the_notebook_is_built_from_its_script():
    done = subprocess.run([sys.executable, str(ROOT / "training/notebooks/build.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.metadata.kernelspec.name == "dicom-annotate"  # the kernel the lifecycle script registers
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code")  # no data stored


def test_the_notebook_runs_from_manifest_to_predictions(tmp_path, monkeypatch):
    work = tmp_path / "work"
    for key in ("ORTHANC_URL", "ORTHANC_USERNAME", "ORTHANC_PASSWORD", "ORTHANC_SECRET_ARN",
                "WALKTHROUGH_MANIFEST", "WALKTHROUGH_IMAGES"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WALKTHROUGH_WORK", str(work))
    monkeypatch.setenv("WALKTHROUGH_PATIENTS", "16")
    monkeypatch.setenv("WALKTHROUGH_EPOCHS", "3")
    monkeypatch.setenv("WALKTHROUGH_IMAGE_SIZE", "32")
    monkeypatch.setenv("WALKTHROUGH_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # the venv's own kernel ("python3"; on the instance it is the lifecycle's "dicom-annotate"), started
    # in the notebook's folder as Jupyter does: the first cell finds the checkout from there
    client = NotebookClient(nb, kernel_name="python3", timeout=300,
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()

    text = "\n".join(output.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                     for output in cell.get("outputs", []) if output.get("output_type") == "stream")
    assert "16 labelled images, 0 failed lines, label attribute 'chest-xray'" in text
    assert "macro AUROC:" in text and "no Orthanc for these images: write-back skipped" in text
    images = [o for cell in nb.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # the sample images and the report's plots
    assert (work / "model" / "model.pt").is_file() and (work / "model" / "metrics.json").is_file()
    prediction_lines = [line for line in text.splitlines() if " p=" in line and " label=" in line]
    assert prediction_lines and all(line.count("p=") == 3 for line in prediction_lines)
