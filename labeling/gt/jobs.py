"""``python -m labeling gt create-job|status|fetch-output``: Ground Truth labeling jobs on AWS (the
behaviour is described in :mod:`labeling.gt.cli`)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

from labeling.aws import AwsError, aws_call
from labeling.gt.contracts import GtError, split_s3_uri
from labeling.gt.output_manifest import scan_output_manifest
from labeling.outdir import atomic_file
from labeling.stack_outputs import StackOutputsError, load_stack_outputs

# Stack outputs (``__main__.py``) create-job needs.
REQUIRED_STACK_OUTPUTS = (
    "annotationBucket", "groundTruthRoleArn", "prelabelLambdaArn", "postlabelLambdaArn",
    "workerTemplateS3Uri", "kmsKeyArn",
)

DEFAULT_TASK_TIME_LIMIT_S = 3600                 # GT: 30 .. 28,800 s
DEFAULT_TASK_AVAILABILITY_S = 10 * 24 * 3600     # GT: up to 864,000 s (public), 365 days (private)
DEFAULT_MAX_CONCURRENT_TASKS = 1000              # GT: 1 .. 5,000
_JOB_NAME_RE = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")  # CreateLabelingJob LabelingJobName


def job_stack_outputs(path: str) -> dict[str, str]:
    """The ``pulumi stack output --json`` file, with every key create-job needs present."""
    try:
        out = load_stack_outputs(REQUIRED_STACK_OUTPUTS, path=path).values
        split_s3_uri(out["workerTemplateS3Uri"], "workerTemplateS3Uri")
    except StackOutputsError as exc:
        raise GtError(str(exc)) from None
    except ValueError as exc:
        raise GtError(f"{path}: stack output {exc}") from None
    return out


def validate_job_name(name: str) -> str:
    from labeling.manifest.format import KNOWN_KEYS

    if not _JOB_NAME_RE.fullmatch(name):
        raise GtError(f"--job-name: {name!r} must be 1-63 letters, digits and hyphens, starting and "
                      "ending with a letter or digit (GT LabelingJobName)")
    if name.endswith("-metadata"):
        raise GtError(f"--job-name: {name!r} must not end in '-metadata' (it is the label attribute "
                      "name; GT writes '<attr>-metadata' itself)")
    if name in KNOWN_KEYS:
        raise GtError(f"--job-name: {name!r} is a manifest key; the label attribute must differ")
    return name


def label_category_config(schema: Any) -> dict[str, Any]:
    """GT's label category configuration file for the schema's labels."""
    return {"document-version": "2018-11-28",
            "labels": [{"label": name} for name in schema.label_names]}


def _region_of_arn(arn: str) -> Optional[str]:
    parts = arn.split(":")
    return parts[3] if len(parts) > 5 and parts[0] == "arn" and parts[3] else None


def _task_description(schema: Any) -> str:
    first = next((line.strip() for line in schema.instructions.splitlines() if line.strip()), "")
    text = first or f"Label DICOM images: {', '.join(schema.label_names)}"
    return text if len(text) <= 255 else text[:254] + "…"


def build_create_request(*, outputs: Mapping[str, str], schema: Any, job_name: str, workteam_arn: str,
                         workers: int, task_time_limit: int, availability: int,
                         max_concurrent: int) -> dict[str, Any]:
    """The ``create_labeling_job`` keyword arguments (no AWS call)."""
    bucket = outputs["annotationBucket"]
    prefix = f"s3://{bucket}/jobs/{job_name}"
    title = f"Label {schema.name} images"
    return {
        "LabelingJobName": job_name,
        "LabelAttributeName": job_name,
        "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": f"{prefix}/manifest.jsonl"}}},
        "OutputConfig": {"S3OutputPath": f"{prefix}/output/", "KmsKeyId": outputs["kmsKeyArn"]},
        "RoleArn": outputs["groundTruthRoleArn"],
        "LabelCategoryConfigS3Uri": f"{prefix}/label-categories.json",
        "HumanTaskConfig": {
            "WorkteamArn": workteam_arn,
            "UiConfig": {"UiTemplateS3Uri": outputs["workerTemplateS3Uri"]},
            "PreHumanTaskLambdaArn": outputs["prelabelLambdaArn"],
            "TaskTitle": title[:128],
            "TaskDescription": _task_description(schema),
            "TaskKeywords": ["DICOM", "medical imaging", "image classification"],
            "NumberOfHumanWorkersPerDataObject": workers,
            "TaskTimeLimitInSeconds": task_time_limit,
            "TaskAvailabilityLifetimeInSeconds": availability,
            "MaxConcurrentTaskCount": max_concurrent,
            "AnnotationConsolidationConfig": {
                "AnnotationConsolidationLambdaArn": outputs["postlabelLambdaArn"]},
        },
        "Tags": [{"Key": "project", "Value": "dicom-annotate"}],
    }


def _check_manifest(path: str, schema: Any) -> list[Any]:
    from labeling.gt.prelabel import series_size_problem
    from labeling.manifest.format import ManifestError, read_manifest

    try:
        lines = read_manifest(path)
    except ManifestError as exc:
        raise GtError(str(exc)) from None
    if not lines:
        raise GtError(f"{path}: the manifest is empty; nothing to label")
    for number, line in enumerate(lines, start=1):
        if line.schema != schema.name:
            raise GtError(f"{path}:{number}: schema: {line.schema!r} is not the schema's name {schema.name!r}")
        if tuple(line.labels) != tuple(schema.label_names):
            raise GtError(f"{path}:{number}: labels: {list(line.labels)} differ from the schema's "
                          f"{list(schema.label_names)}")
        policy_problem = schema.line_policy_problem(line.uncertain_policy)
        if policy_problem:
            raise GtError(f"{path}:{number}: {policy_problem}")
        too_large = series_size_problem(line.to_dict())  # GT would refuse the job for it
        if too_large:
            raise GtError(f"{path}:{number}: {too_large}")
    return lines


def _client(service: str, region: Optional[str]) -> Any:
    """A boto3 client (tests replace this function)."""
    import boto3

    return boto3.client(service, region_name=region)


def cmd_create_job(args: argparse.Namespace) -> int:
    from labeling.contracts.schema import SchemaError, load_schema

    job_name = validate_job_name(args.job_name)
    outputs = job_stack_outputs(args.stack_outputs)
    try:
        schema = load_schema(args.schema)
    except SchemaError as exc:
        raise GtError(str(exc)) from None
    lines = _check_manifest(args.manifest, schema)
    if not args.workteam_arn.startswith("arn:") or ":workteam/" not in args.workteam_arn:
        raise GtError(f"--workteam-arn: {args.workteam_arn!r} is not a SageMaker workteam ARN")
    if not 30 <= args.task_time_limit <= 28_800:
        raise GtError(f"--task-time-limit: {args.task_time_limit} is outside GT's 30..28800 seconds")
    if args.max_concurrent_tasks > 5000:
        raise GtError(f"--max-concurrent-tasks: {args.max_concurrent_tasks} is above GT's 5000")
    workers = args.workers_per_object or schema.annotators_per_item
    request = build_create_request(
        outputs=outputs, schema=schema, job_name=job_name, workteam_arn=args.workteam_arn,
        workers=workers, task_time_limit=args.task_time_limit,
        availability=args.task_availability_lifetime, max_concurrent=args.max_concurrent_tasks)
    if args.dry_run:
        print(json.dumps(request, indent=2, ensure_ascii=False))
        print(f"dry run: {len(lines)} manifest lines; nothing uploaded, no job created", file=sys.stderr)
        return 0

    region = args.region or _region_of_arn(outputs["prelabelLambdaArn"])
    s3 = _client("s3", region)
    bucket = outputs["annotationBucket"]
    sse = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": outputs["kmsKeyArn"]}
    manifest_key = split_s3_uri(request["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"])[1]
    categories_key = split_s3_uri(request["LabelCategoryConfigS3Uri"])[1]
    aws_call(f"upload s3://{bucket}/{manifest_key}", s3.put_object, Bucket=bucket, Key=manifest_key,
              Body=Path(args.manifest).read_bytes(), ContentType="application/jsonl", **sse)
    aws_call(f"upload s3://{bucket}/{categories_key}", s3.put_object, Bucket=bucket, Key=categories_key,
              Body=json.dumps(label_category_config(schema), ensure_ascii=False).encode("utf-8"),
              ContentType="application/json", **sse)
    sagemaker = _client("sagemaker", region)
    response = aws_call(f"create_labeling_job {job_name}", sagemaker.create_labeling_job, **request)
    print(response["LabelingJobArn"])
    return 0


# ======================================================================= status, fetch-output

def _describe(job_name: str, region: Optional[str]) -> dict[str, Any]:
    validate_job_name(job_name)
    sagemaker = _client("sagemaker", region)
    return aws_call(f"describe_labeling_job {job_name}", sagemaker.describe_labeling_job,
                     LabelingJobName=job_name)


def cmd_status(args: argparse.Namespace) -> int:
    job = _describe(args.job_name, args.region)
    counters = job.get("LabelCounters") or {}
    rows = [
        ("job", job.get("LabelingJobName", args.job_name)),
        ("status", job.get("LabelingJobStatus", "?")),
        ("created", str(job.get("CreationTime", ""))),
        ("last modified", str(job.get("LastModifiedTime", ""))),
        ("labelled (total)", counters.get("TotalLabeled", 0)),
        ("  by humans", counters.get("HumanLabeled", 0)),
        ("  by machine", counters.get("MachineLabeled", 0)),
        ("failed", counters.get("FailedNonRetryableError", 0)),
        ("unlabelled", counters.get("Unlabeled", 0)),
        ("failure reason", job.get("FailureReason") or "-"),
        ("output manifest", (job.get("LabelingJobOutput") or {}).get("OutputDatasetS3Uri") or "-"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


def check_output_manifest(text: str, attribute: str, source: str = "<output>") -> dict[str, Any]:
    """Classify the lines of an output manifest (see :mod:`labeling.gt.cli`) with the one reader,
    :func:`labeling.gt.output_manifest.scan_output_manifest`, counting bad lines instead of stopping."""
    lines = text.splitlines()
    problems: list[str] = []
    scan = scan_output_manifest(lines, attribute, problems=problems, name=source)
    return {"lines": sum(1 for raw in lines if raw.strip()), "labelled": len(scan.records),
            "failed": len(scan.failed), "invalid": len(problems), "problems": problems}


def cmd_fetch_output(args: argparse.Namespace) -> int:
    job = _describe(args.job_name, args.region)
    uri = (job.get("LabelingJobOutput") or {}).get("OutputDatasetS3Uri")
    if not uri:
        raise AwsError(f"job {args.job_name} has no output manifest yet "
                       f"(status {job.get('LabelingJobStatus', '?')})")
    bucket, key = split_s3_uri(uri, "LabelingJobOutput.OutputDatasetS3Uri")
    s3 = _client("s3", args.region)
    body = aws_call(f"download {uri}", s3.get_object, Bucket=bucket, Key=key)["Body"].read()
    out = Path(args.out)
    try:
        with atomic_file(out) as handle:
            handle.write(body)
    except OSError as exc:
        raise GtError(f"{args.out}: cannot write: {exc.strerror or exc}") from None
    attribute = job.get("LabelAttributeName") or args.job_name
    report = check_output_manifest(body.decode("utf-8", errors="replace"), attribute, uri)
    print(f"{uri} → {args.out}: {report['lines']} lines, {report['labelled']} labelled, "
          f"{report['failed']} failed, {report['invalid']} invalid")
    for problem in report["problems"][:5]:
        print(problem, file=sys.stderr)
    return 1 if report["invalid"] else 0
