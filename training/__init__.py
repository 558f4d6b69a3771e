"""Training, evaluation and inference on the consolidated labels (``python -m training``).

Modules: :mod:`training.imaging` (DICOM → model input), :mod:`training.dataset` (labels from the
output manifest, images fetched once and cached, split by patient), :mod:`training.train` (MONAI
DenseNet121, multi-label), :mod:`training.report` (metrics, plots, HTML), :mod:`training.inference`
(SageMaker handler functions and the ``predict`` command), :mod:`training.writeback` (predictions
into Orthanc), :mod:`training.active` (pre-labels and uncertainty-first order for the next job),
:mod:`training.sagemaker_entry` (SageMaker training entry point).
"""
