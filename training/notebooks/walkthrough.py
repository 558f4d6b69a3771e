# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: dicom-annotate
#     language: python
#     name: dicom-annotate
# ---

# %% [markdown]
# # From labels to a model: the dicom-annotate loop in one notebook
#
# This notebook walks the steps `python -m training train` and `make demo` run, with the
# project's own modules, so you can look at each intermediate result:
#
# 1. an **output manifest** (the portal's export or a Ground Truth job's output — the same format),
#    read with `labeling.gt.output_manifest`, the one reader both backends' output goes through;
# 2. the **dataset**: labels per image, DICOM decoded, windowed and resized (`training.dataset`,
#    `training.imaging`), split by patient;
# 3. **training** a MONAI DenseNet121 multi-label model (`training.train`);
# 4. **evaluation**: per-label AUROC, the report and its plots (`training.report`);
# 5. **prediction** on held-out images (`training.inference`) and, when an Orthanc is configured,
#    **write-back** of the predictions as DICOM SR (`training.writeback`, `labeling.dicom.sr`);
# 6. the same training on **SageMaker** (`python -m training sagemaker ...`).
#
# On the labeling bundle's notebook instance, pick the **dicom-annotate** kernel (installed by the
# instance's lifecycle script). Settings come from environment variables, so the same notebook runs
# unattended in the project's tests; without `WALKTHROUGH_MANIFEST` it makes a small synthetic
# dataset labelled by simulated annotators of known quality.

# %%
import json
import os
import sys
import tempfile
from pathlib import Path


def find_repo_root() -> Path:
    """The dicom-annotate checkout: $DICOM_ANNOTATE_ROOT, else the first parent holding labeling/."""
    if os.environ.get("DICOM_ANNOTATE_ROOT"):
        return Path(os.environ["DICOM_ANNOTATE_ROOT"]).resolve()
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / "labeling" / "__init__.py").is_file() and (folder / "training" / "__init__.py").is_file():
            return folder
    raise RuntimeError("cannot find the dicom-annotate checkout; set DICOM_ANNOTATE_ROOT")


ROOT = find_repo_root()
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MANIFEST = os.environ.get("WALKTHROUGH_MANIFEST")  # an output manifest; unset: a synthetic one
IMAGES = os.environ.get("WALKTHROUGH_IMAGES")      # a folder of <orthanc id>.dcm; unset: Orthanc (ORTHANC_*)
WORK = Path(os.environ.get("WALKTHROUGH_WORK") or tempfile.mkdtemp(prefix="dicom-annotate-walkthrough-"))
EPOCHS = int(os.environ.get("WALKTHROUGH_EPOCHS", "20"))
IMAGE_SIZE = int(os.environ.get("WALKTHROUGH_IMAGE_SIZE", "128"))
PATIENTS = int(os.environ.get("WALKTHROUGH_PATIENTS", "40"))
THREADS = int(os.environ["WALKTHROUGH_THREADS"]) if os.environ.get("WALKTHROUGH_THREADS") else None
WORK.mkdir(parents=True, exist_ok=True)
print(f"repository {ROOT}\nwork folder {WORK}")

# %% [markdown]
# ## 1. An output manifest
#
# A real one comes from `python -m labeling portal export …` or `python -m labeling gt fetch-output …`.
# Without one, we synthesise chest-X-ray-like images with known findings (`devkit.synth`), let
# simulated annotators label them, consolidate their answers with the project's consolidation
# library (Dawid–Skene) and write the consolidated labels as a GT-format output manifest — exactly
# what a labeling job would produce, annotators' mistakes included.

# %%
if MANIFEST is None:
    from devkit.synth import generate_dataset
    from devkit.demo_labels import link_images, write_simulated_manifest

    generate_dataset(WORK / "synth", patients=PATIENTS, studies_per_patient=1, size=64, seed=7,
                     progress=False, workers=1, force=True)
    simulated = write_simulated_manifest(WORK / "synth", WORK / "output.manifest", seed=7)
    link_images(WORK / "synth", WORK / "images")
    MANIFEST, IMAGES = str(WORK / "output.manifest"), str(WORK / "images")
    print("simulated annotators:", simulated)

# %% [markdown]
# ## 2. Read it with the project's reader
#
# `scan_output_manifest` accepts either backend's lines (both `job-name` spellings, multi-label and
# ROI content, confidences) and refuses a malformed line naming the file and line; objects GT could
# not label come back apart, in `failed`.

# %%
from labeling.gt.output_manifest import scan_output_manifest

scan = scan_output_manifest(MANIFEST)
records = scan.records
print(f"{len(records)} labelled images, {len(scan.failed)} failed lines, label attribute {scan.label_attribute!r}")
label_names = list(records[0].line.get("labels") or records[0].labels)
for name in label_names:
    present = sum(bool(r.labels.get(name)) for r in records)
    confidences = [r.label_confidence[name] for r in records if name in r.label_confidence]
    mean = sum(confidences) / len(confidences) if confidences else float("nan")
    print(f"  {name:<10} present in {present:>3}/{len(records)} images, mean consolidated confidence {mean:.3f}")
print("first record, in the label shape:", json.dumps(records[0].answer())[:300])

# %% [markdown]
# ## 3. The dataset
#
# Each image becomes a `(1, size, size)` array in [0, 1]: decoded with pydicom, windowed with the
# file's VOI window, resized. Training splits by patient, so no patient is in both the training
# and the validation set.

# %%
import matplotlib.pyplot as plt

from training.dataset import DirectorySource, OrthancSource, read_labels
from training.imaging import Preprocessing, patient_key, preprocess, read_dicom

names, items = read_labels(MANIFEST)
if IMAGES:
    source = DirectorySource(IMAGES)
    orthanc = None
else:
    from training.inference import orthanc_from_env

    orthanc = orthanc_from_env()
    source = OrthancSource(orthanc)
prep = Preprocessing(size=IMAGE_SIZE)
fig, axes = plt.subplots(1, 4, figsize=(10, 3))
for ax, item in zip(axes, items):
    ds = read_dicom(source.fetch(item.instance_id), name=item.instance_id)
    ax.imshow(preprocess(ds, prep)[0], cmap="gray")
    ax.set_title(", ".join(n for n, t in zip(names, item.target) if t) or "no finding", fontsize=8)
    ax.axis("off")
plt.show()
print(f"{len(items)} images, {len({patient_key(read_dicom(source.fetch(i.instance_id))) for i in items})} patients")

# %% [markdown]
# ## 4. Train
#
# `train_from_manifest` is the function behind `python -m training train` and the SageMaker entry
# point: MONAI DenseNet121 with one output per label, binary cross-entropy (multi-label), MONAI
# augmentation, early stopping on the validation macro AUROC.

# %%
from training.train import TrainConfig, train_from_manifest

config = TrainConfig(epochs=EPOCHS, image_size=IMAGE_SIZE, batch_size=8, patience=max(3, EPOCHS // 3),
                     threads=THREADS)
model_dir = WORK / "model"
metrics = train_from_manifest(MANIFEST, model_dir, images_dir=IMAGES, orthanc=orthanc, config=config,
                              cache_dir=WORK / "cache", progress=False)

# %% [markdown]
# ## 5. Evaluate
#
# `metrics.json` holds per-label AUROC, average precision, F1 at the chosen threshold and the
# calibration; `report.html` shows them with the ROC, calibration and loss curves.

# %%
from IPython.display import Image, display

split = json.loads((model_dir / "split.json").read_text())
print(f"train {metrics['n_train']} images, validation {metrics['n_val']} images")
print("per-label AUROC:", {k: round(v, 3) if v == v else None for k, v in metrics["auroc"].items()})
print("macro AUROC:", metrics["macro_auroc"])
print("report:", model_dir / "report.html")
for png in sorted(model_dir.glob("*.png")):
    display(Image(filename=str(png), width=480))

# %% [markdown]
# ## 6. Predict held-out images
#
# The inference module is what the SageMaker endpoint runs (`model_fn`, `input_fn`, `predict_fn`,
# `output_fn`); here it predicts the validation images and we compare with the consolidated labels.

# %%
from training.inference import Predictor, predict_ids

predictor = Predictor.load(model_dir)
validation_ids = split["validation"]
predictions = predict_ids(predictor, validation_ids, source, progress=False)
truth = {item.instance_id: item for item in items}
for prediction in predictions[:8]:
    item = truth[prediction["source"]]
    cells = [f"{e['name']} p={e['probability']:.2f} label={int(t)}" for e, t in zip(prediction["labels"], item.target)]
    print(prediction["source"][-12:], " | ".join(cells))

# %% [markdown]
# ## 7. Write the predictions back (optional)
#
# With an Orthanc configured (`ORTHANC_URL` + `ORTHANC_USERNAME`/`ORTHANC_PASSWORD`, or
# `ORTHANC_SECRET_ARN` on AWS) each prediction becomes a DICOM SR (TID 1500, the model as device
# observer) in the image's study, next to the annotators' SRs. The synthetic images are not in
# Orthanc, so this step is skipped for them.

# %%
if orthanc is not None:
    from training.writeback import write_back

    stored = write_back(orthanc, predictions)
    print(f"{len(stored)} SRs stored, e.g. {stored[:2]}")
else:
    print("no Orthanc for these images: write-back skipped")

# %% [markdown]
# ## 8. The same training on SageMaker
#
# From a shell with the stack's credentials (or this notebook instance's role):
#
# ```bash
# python -m training sagemaker train --stack dev --manifest output.manifest --epochs 40 --dry-run  # see the request
# python -m training sagemaker train --stack dev --manifest output.manifest --epochs 40
# python -m training sagemaker status --stack dev --training-job <name>
# python -m training sagemaker deploy --stack dev --training-job <name>
# python -m training sagemaker delete --stack dev --endpoint-name <name>
# ```
#
# The job runs the same `train_from_manifest` in the SageMaker PyTorch container on the
# `manifest` and `images` channels; the endpoint serves `training.inference`.
