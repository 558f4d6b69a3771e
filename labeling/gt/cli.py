"""``python -m labeling gt``: the SageMaker Ground Truth path from the command line.

Sub-commands
============
``render --template FILE --task-input JSON_FILE --out HTML_FILE [--asset-base URL] [--viewer-base-url URL]``
    Local preview of the worker task template, rendered the way GT renders it. First the viewer
    placeholders of the shipped template (``labeling/gt/worker_template.liquid.html``) are filled in
    as the stack does (:func:`labeling.gt.viewer_assets.fill_template`): ``--viewer-base-url`` is
    where ``viewer.js`` and its worker and codecs are served (default: the ``file://`` URL of
    ``--viewer-dir``, itself defaulting to ``build/viewer``; browsers load module scripts only over
    http(s), so serve that directory and pass its URL to use the page), and the SRI is that of
    ``<viewer-dir>/viewer.js`` (``make viewer`` first). Then: Liquid
    (python-liquid 2) with **autoescape on**, the context ``{"task": {"input": <task input>}}``, and
    GT's extra filters emulated:

    - ``grant_read_access``: GT swaps an ``s3://bucket/key`` URI for a short-lived presigned https
      URL. Locally: ``<asset-base>/<key>`` when ``--asset-base`` is given (e.g. a local server or
      the MinIO/moto endpoint serving the staging bucket), else the virtual-hosted S3 URL
      ``https://<bucket>.s3.amazonaws.com/<key>`` (unsigned; it works only for public objects).
      The key is URL-quoted (``/`` kept). Anything that is not an ``s3://`` URI is returned as is.
    - ``to_json``: ``json.dumps`` of the value (a missing key gives ``null``). Its output is autoescaped like any other value, as
      in GT (``categories='{{ task.input.labels | to_json }}'`` in an attribute is the GT idiom).
    - ``skip_autoescape``: marks the value as safe HTML (only for trusted content).
    - ``escape`` / ``escape_once``: python-liquid's built-ins (autoescape-aware).

    The task input file is the ``taskInput`` object the pre-annotation Lambda returns; a whole
    pre-annotation response (``{"taskInput": {...}, "isHumanAnnotationRequired": ...}``) is unwrapped.

    ``<crowd-form>`` stand-in: GT's ``crowd-html-elements.js`` is not loaded (its ``<script>`` tag is
    replaced by a comment, so the page works offline); an inline script is injected before
    ``</body>`` (or at the end) that defines ``crowd-form`` and ``crowd-button`` custom elements.
    ``crowd-form`` adds a Submit button unless the form holds a ``crowd-button form-action="submit"``
    or a submit ``<button>``; on submit it dispatches a cancelable ``submit`` event on itself (the
    template's own listeners run, e.g. to fill a hidden field), then collects the **named** fields
    inside it (``input``/``select``/``textarea``; a checkbox gives ``true``/``false``, a radio group
    the checked value, anything else its ``value``) into an object: ``window.__submitted`` is that
    object, ``window.__submittedContent`` the JSON string GT would store as
    ``annotationData.content``, and a ``crowd-form-submitted`` event fires on ``window``.

    Limits, the ones GT applies and no stricter (:mod:`labeling.gt.contracts`): a template longer than
    :data:`~labeling.gt.contracts.MAX_TEMPLATE_CHARS` is refused (GT counts the template it is given,
    before rendering); a task input larger than the pre-annotation Lambda may return
    (:data:`~labeling.gt.contracts.MAX_PRELABEL_RESPONSE_BYTES`) is refused. The rendered page has
    no such limit: a series task's page grows with its slices' presigned URLs (``bench/gt_series_size.py``).

    ``--serve --asset-dir DIR`` serves each image the task grants (``image``, a series task's
    ``slices``) from ``DIR/KEY``, or — for a staged key ``…/<orthanc instance id>.dcm`` — from the DICOM
    file under DIR with that Orthanc instance ID (:class:`labeling.gt.render.AssetDir`); an image it
    finds neither way is an error naming it, before anything is served.

``create-job --stack-outputs JSON_FILE --manifest FILE --schema FILE --job-name NAME --workteam-arn ARN``
    Validates the manifest (:func:`labeling.manifest.format.read_manifest`, each line's ``schema``
    and ``labels`` must match the schema) and the schema, then uploads the manifest to
    ``s3://<annotationBucket>/jobs/<job>/manifest.jsonl`` and the schema's labels as a GT label
    category config to ``…/jobs/<job>/label-categories.json`` (SSE-KMS with ``kmsKeyArn``), and
    calls ``sagemaker.create_labeling_job`` (see :func:`labeling.gt.jobs.build_create_request`): the
    label attribute is the job name, the output goes to ``s3://<bucket>/jobs/<job>/output/``. The
    stack outputs file is ``pulumi stack output --json``. ``--region`` defaults to the region of
    ``prelabelLambdaArn`` (GT must run where its Lambdas are). ``--dry-run`` prints the request as
    JSON and touches nothing (no AWS client is even created).

``status --job-name NAME``
    ``describe_labeling_job``: status, label counters, failure reason, output location.

``fetch-output --job-name NAME --out FILE``
    Downloads the job's output manifest (``LabelingJobOutput.OutputDatasetS3Uri``) to FILE and
    checks every line with the one output-manifest reader
    (:func:`labeling.gt.output_manifest.scan_output_manifest`, collecting problems: metadata with
    ``job-name`` or ``job_name``, content in the label shape): a valid line counts as labelled; a
    line with ``failure-reason`` in its metadata, or with neither ``<attr>`` nor ``<attr>-metadata``,
    as failed (GT writes those for objects it could not label); any other line as invalid, with its
    problem.

Exit codes (README, "Errors and exit codes"): 0 done; 1 invalid output-manifest lines; 2 bad input (one
line naming the file, the line or the key); 3 AWS refused or could not be reached.
"""


from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from labeling.cli import bad_input_errors, positive_int
from labeling.gt.contracts import GtError
from labeling.gt.jobs import (DEFAULT_MAX_CONCURRENT_TASKS, DEFAULT_TASK_AVAILABILITY_S, DEFAULT_TASK_TIME_LIMIT_S,
                              cmd_create_job, cmd_fetch_output, cmd_status)
from labeling.gt.render import cmd_render

_run = bad_input_errors(GtError)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("gt",
                                   description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="gt_command", metavar="GT_COMMAND", required=True)

    p = sub.add_parser("render", help="render the worker template locally (GT filters, crowd-form stand-in)")
    p.add_argument("--template", required=True, help="Liquid worker template (≤ 128,000 characters)")
    p.add_argument("--task-input", required=True, metavar="JSON_FILE",
                   help="the taskInput object (or a whole pre-annotation response)")
    p.add_argument("--out", metavar="HTML_FILE", help="write the rendered page here")
    p.add_argument("--serve", nargs="?", type=float, const=600.0, metavar="SECONDS",
                   help="serve the page, the viewer build and --asset-dir on 127.0.0.1 and print the URL "
                        "to open; stops after SECONDS (default 600) or on Ctrl-C")
    p.add_argument("--asset-dir", type=Path, metavar="DIR",
                   help="with --serve: grant_read_access maps s3://bucket/KEY to DIR/KEY (e.g. the "
                        "staged DICOM file of the task input), or a staged KEY .../<orthanc id>.dcm to the "
                        "DICOM file under DIR with that Orthanc instance ID (e.g. a synth --series folder)")
    p.add_argument("--asset-base", metavar="URL",
                   help="grant_read_access maps s3://bucket/KEY to URL/KEY (default: "
                        "https://BUCKET.s3.amazonaws.com/KEY)")
    p.add_argument("--viewer-base-url", metavar="URL",
                   help="where viewer.js, its worker and codecs are served (default: --serve's own URL, "
                        "else the file:// URL of --viewer-dir, which browsers refuse for module scripts)")
    p.add_argument("--viewer-dir", type=Path, metavar="DIR",
                   help="the viewer build whose viewer.js the SRI is computed from (default: build/viewer)")
    p.set_defaults(func=_run(cmd_render))

    p = sub.add_parser("create-job", help="create a labeling job from the stack outputs")
    p.add_argument("--stack-outputs", required=True, metavar="JSON_FILE",
                   help="output of `pulumi stack output --json`")
    p.add_argument("--manifest", required=True, metavar="FILE",
                   help="the labeling manifest (python -m labeling manifest), uploaded to the annotation bucket")
    p.add_argument("--schema", required=True, metavar="FILE",
                   help="label schema the manifest was built with (e.g. schemas/chest-xray.yaml)")
    p.add_argument("--job-name", required=True, help="also the label attribute name")
    p.add_argument("--workteam-arn", required=True, metavar="ARN", help="the private work team that labels")
    p.add_argument("--workers-per-object", type=positive_int, metavar="K",
                   help="workers per image (default: the schema's annotators_per_item)")
    p.add_argument("--task-time-limit", type=positive_int, default=DEFAULT_TASK_TIME_LIMIT_S, metavar="S",
                   help=f"seconds a worker has per task (default {DEFAULT_TASK_TIME_LIMIT_S})")
    p.add_argument("--task-availability-lifetime", type=positive_int, default=DEFAULT_TASK_AVAILABILITY_S,
                   metavar="S", help=f"seconds a task stays offered (default {DEFAULT_TASK_AVAILABILITY_S})")
    p.add_argument("--max-concurrent-tasks", type=positive_int, default=DEFAULT_MAX_CONCURRENT_TASKS,
                   metavar="N", help=f"default {DEFAULT_MAX_CONCURRENT_TASKS}")
    p.add_argument("--dry-run", action="store_true", help="print the request as JSON; touch nothing")
    p.add_argument("--region", help="default: the region of prelabelLambdaArn")
    p.set_defaults(func=_run(cmd_create_job))

    p = sub.add_parser("status", help="a labeling job's status and counters")
    p.add_argument("--job-name", required=True, help="the labeling job (create-job's --job-name)")
    p.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    p.set_defaults(func=_run(cmd_status))

    p = sub.add_parser("fetch-output", help="download and check a job's output manifest")
    p.add_argument("--job-name", required=True, help="the labeling job (create-job's --job-name)")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the output manifest")
    p.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    p.set_defaults(func=_run(cmd_fetch_output))
