"""``python -m training sagemaker train|deploy|delete|status``: the same training code on SageMaker.

Sub-commands
============
``train --stack NAME --manifest FILE|S3_URI [--images S3_PREFIX] [--label-attribute NAME] ...``
    Packages ``training/`` + ``labeling/`` + ``training/requirements.txt`` into a deterministic
    ``sourcedir.tar.gz`` (:func:`build_source_archive`: sorted members, fixed times and owners, so
    the same code gives the same bytes and the same content-addressed key
    ``s3://<annotationBucket>/training/source/<sha256[:16]>/sourcedir.tar.gz``), uploads it (and a
    local manifest, after checking it with :func:`labeling.gt.output_manifest.scan_output_manifest`)
    with SSE-KMS, and calls ``CreateTrainingJob`` (:func:`training_job_request`):

    - image: the SageMaker **PyTorch framework training** Deep Learning Container of the stack's
      region (:data:`TRAINING_IMAGE`, CPU or GPU by instance family; ``--training-image`` overrides);
    - the container's training toolkit runs ``sagemaker_program`` from the unpacked
      ``sagemaker_submit_directory`` after ``pip install -r requirements.txt`` (PyPI through the VPC's
      NAT); the program is the archive's generated launcher ``sagemaker_train.py``, which puts the
      archive root on ``sys.path``, runs ``training.sagemaker_entry`` (``SM_*`` variables, the
      hyperparameters as ``--kebab-case`` arguments) and then copies the code into
      ``$SM_MODEL_DIR/code`` so that ``model.tar.gz`` is what the inference container needs;
    - channels ``manifest`` (the output manifest) and ``images`` (the staged ``<orthanc id>.dcm``
      copies; default ``s3://<annotationBucket>/<labeling job name>/``, where the GT pre-label Lambda
      stages them, the job name taken from the manifest's metadata);
    - hyperparameters ``label-attribute``, ``epochs`` and any ``--hyperparameter KEY=VALUE``;
    - output ``s3://<annotationBucket>/training/<job>/output/``, KMS for the output and the volume,
      the stack's private subnets + a security group when the stack exports them
      (``trainingSubnetIds``, ``trainingSecurityGroupId``), ``--max-runtime``, optional
      ``--spot`` (managed spot with checkpoints under ``.../checkpoints/``).

``deploy --stack NAME --training-job NAME [--endpoint-name NAME] [--instance-type T]``
    ``CreateModel`` (PyTorch **inference** DLC, :data:`INFERENCE_IMAGE`; ``ModelDataUrl`` = the job's
    ``model.tar.gz``; ``SAGEMAKER_PROGRAM=inference.py``, the archive's shim over
    ``training.inference``), ``CreateEndpointConfig`` (KMS for the ML storage volume, except on
    instance types with local NVMe storage, which SageMaker refuses a key for and encrypts in
    hardware), then ``CreateEndpoint`` — or ``UpdateEndpoint`` when the endpoint exists.

``delete --stack NAME --endpoint-name NAME``
    Deletes the endpoint, its endpoint configuration and its model(s) (``--keep-model`` keeps them).

``status --stack NAME [--training-job NAME] [--endpoint-name NAME]``
    ``DescribeTrainingJob`` / ``DescribeEndpoint``: status, times, failure reason, artefacts.

Every sub-command takes ``--dry-run`` (print the requests as JSON; no AWS client is created and
nothing is uploaded) and ``--region`` (default: the region of the stack's ``kmsKeyArn``). The stack
outputs come from ``pulumi stack output --json --stack NAME`` or from ``--stack-outputs FILE`` (that
command's output saved), as for ``python -m labeling gt create-job``.

Container versions (``--training-image`` / ``--inference-image`` take any other URI): PyTorch
training and inference Deep Learning Containers as the SageMaker Python SDK names them — version,
Python, tag format and registry account per region come from the SDK's ``pytorch.json`` entries in
``training/dlc_images.json`` (:mod:`training.dlc`), not from literals here.

Exit codes (README): 0 done; 2 bad input (one line naming the flag, file or stack output); 3 AWS error.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from labeling.aws import AwsError, aws_call
from labeling.cli import bad_input_errors, positive_int
from labeling.stack_outputs import StackOutputsError, load_stack_outputs as read_stack_outputs
from training.dlc import INFERENCE_IMAGE, TRAINING_IMAGE  # noqa: F401 - re-exported for callers
from training.source_archive import (  # noqa: F401 - re-exported for callers
    ENTRY_MODULE, INFERENCE_SHIM, LAUNCHER, SageMakerCliError, build_source_archive, source_key)

REQUIRED_OUTPUTS = ("annotationBucket", "sagemakerExecutionRoleArn", "kmsKeyArn")
OPTIONAL_OUTPUTS = ("trainingSubnetIds", "trainingSecurityGroupId")


DEFAULT_TRAIN_INSTANCE = "ml.m5.xlarge"
DEFAULT_ENDPOINT_INSTANCE = "ml.m5.large"
DEFAULT_MAX_RUNTIME_S = 4 * 3600
DEFAULT_VOLUME_GB = 30
_NAME_RE = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")  # training job / model / endpoint names



# ================================================================================ stack outputs

def load_stack_outputs(*, stack: Optional[str], path: Optional[str]) -> dict[str, Any]:
    """The stack outputs this command needs, from ``--stack-outputs FILE`` or ``pulumi stack output``
    (:func:`labeling.stack_outputs.load_stack_outputs`), plus the optional training network."""
    try:
        read = read_stack_outputs(REQUIRED_OUTPUTS, path=path, stack=stack)
    except StackOutputsError as exc:
        raise SageMakerCliError(str(exc)) from None
    out: dict[str, Any] = dict(read.values)
    data, where = read.data, read.where
    subnets = data.get("trainingSubnetIds")
    if subnets is not None:
        if not isinstance(subnets, list) or not subnets or not all(isinstance(s, str) and s for s in subnets):
            raise SageMakerCliError(f"{where}: stack output trainingSubnetIds: {subnets!r} is not a list of ids")
        out["trainingSubnetIds"] = list(subnets)
    group = data.get("trainingSecurityGroupId")
    if group is not None:
        if not isinstance(group, str) or not group:
            raise SageMakerCliError(f"{where}: stack output trainingSecurityGroupId: {group!r} is not an id")
        out["trainingSecurityGroupId"] = group
    return out


def region_of(outputs: Mapping[str, Any], override: Optional[str]) -> str:
    if override:
        return override
    parts = outputs["kmsKeyArn"].split(":")
    if len(parts) > 5 and parts[0] == "arn" and parts[3]:
        return parts[3]
    raise SageMakerCliError(f"stack output kmsKeyArn {outputs['kmsKeyArn']!r} names no region; give --region")


def vpc_config(outputs: Mapping[str, Any]) -> Optional[dict[str, Any]]:
    if "trainingSubnetIds" in outputs and "trainingSecurityGroupId" in outputs:
        return {"SecurityGroupIds": [outputs["trainingSecurityGroupId"]], "Subnets": outputs["trainingSubnetIds"]}
    return None


# =================================================================================== requests

def is_gpu_instance(instance_type: str) -> bool:
    family = instance_type.removeprefix("ml.").split(".")[0]
    return family[:1] in ("p", "g")


def has_local_nvme(instance_type: str) -> bool:
    """Instance types with local NVMe instance storage: SageMaker refuses a volume KMS key for them."""
    family = instance_type.removeprefix("ml.").split(".")[0]
    return bool(re.fullmatch(r"[a-z]+\d+[a-z]*d[a-z]*", family)) or family.startswith(("g5", "g6", "p5", "trn", "inf2"))


def validate_name(name: str, flag: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise SageMakerCliError(f"{flag}: {name!r} must be 1-63 letters, digits and hyphens, starting and ending "
                                "with a letter or digit")
    return name


def default_job_name(now: Optional[datetime] = None) -> str:
    return "dicom-annotate-" + (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")


def _json_hyperparameter(value: Any) -> str:
    # The framework containers json.loads every sagemaker_* hyperparameter (the SageMaker SDK encodes
    # them all this way); a plain string would fail there.
    return json.dumps(value)


def training_job_request(*, outputs: Mapping[str, Any], region: str, job_name: str, source_uri: str,
                         manifest_uri: str, images_uri: str, label_attribute: Optional[str],
                         epochs: Optional[int], hyperparameters: Mapping[str, str], instance_type: str,
                         volume_gb: int, max_runtime: int, spot: bool, max_wait: Optional[int],
                         image: Optional[str]) -> dict[str, Any]:
    """The ``create_training_job`` keyword arguments (no AWS call)."""
    bucket, kms = outputs["annotationBucket"], outputs["kmsKeyArn"]
    prefix = f"s3://{bucket}/training/{job_name}"
    params: dict[str, str] = {
        "sagemaker_program": _json_hyperparameter(LAUNCHER),
        "sagemaker_submit_directory": _json_hyperparameter(source_uri),
        "sagemaker_region": _json_hyperparameter(region),
        "sagemaker_container_log_level": "20",
    }
    if label_attribute:
        params["label-attribute"] = label_attribute
    if epochs is not None:
        params["epochs"] = str(epochs)
    params.update(hyperparameters)

    def channel(name: str, uri: str, content_type: Optional[str] = None) -> dict[str, Any]:
        c: dict[str, Any] = {"ChannelName": name, "InputMode": "File", "CompressionType": "None",
                             "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri,
                                                             "S3DataDistributionType": "FullyReplicated"}}}
        if content_type:
            c["ContentType"] = content_type
        return c

    stopping: dict[str, int] = {"MaxRuntimeInSeconds": max_runtime}
    request: dict[str, Any] = {
        "TrainingJobName": job_name,
        "AlgorithmSpecification": {
            "TrainingImage": image or TRAINING_IMAGE.uri(region, is_gpu_instance(instance_type)),
            "TrainingInputMode": "File",
            # the epoch line of training.train: "epoch  3/20  train loss 0.41  val loss 0.38  val macro AUROC 0.93"
            "MetricDefinitions": [
                {"Name": "validation:macro_auroc", "Regex": r"val macro AUROC ([0-9.]+)"},
                {"Name": "validation:loss", "Regex": r"val loss ([0-9.]+)"},
                {"Name": "train:loss", "Regex": r"train loss ([0-9.]+)"},
            ],
            "EnableSageMakerMetricsTimeSeries": True,
        },
        "RoleArn": outputs["sagemakerExecutionRoleArn"],
        "HyperParameters": params,
        "InputDataConfig": [channel("manifest", manifest_uri, "application/jsonlines"), channel("images", images_uri)],
        "OutputDataConfig": {"S3OutputPath": f"{prefix}/output/", "KmsKeyId": kms},
        "ResourceConfig": {"InstanceType": instance_type, "InstanceCount": 1, "VolumeSizeInGB": volume_gb,
                           **({} if has_local_nvme(instance_type) else {"VolumeKmsKeyId": kms})},
        "StoppingCondition": stopping,
        "EnableInterContainerTrafficEncryption": True,
        "Environment": {"PYTHONUNBUFFERED": "1"},
        "Tags": [{"Key": "project", "Value": "dicom-annotate"}],
    }
    vpc = vpc_config(outputs)
    if vpc:
        request["VpcConfig"] = vpc
    if spot:
        request["EnableManagedSpotTraining"] = True
        stopping["MaxWaitTimeInSeconds"] = max_wait or 2 * max_runtime
        request["CheckpointConfig"] = {"S3Uri": f"{prefix}/checkpoints/", "LocalPath": "/opt/ml/checkpoints"}
    return request


def deploy_requests(*, outputs: Mapping[str, Any], region: str, name: str, model_data: str, instance_type: str,
                    count: int, image: Optional[str]) -> dict[str, dict[str, Any]]:
    """``create_model`` / ``create_endpoint_config`` / ``create_endpoint`` keyword arguments."""
    container = {
        "Image": image or INFERENCE_IMAGE.uri(region, is_gpu_instance(instance_type)),
        "ModelDataUrl": model_data,
        "Environment": {
            "SAGEMAKER_PROGRAM": INFERENCE_SHIM,
            "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
            "SAGEMAKER_REGION": region,
            "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
        },
    }
    model: dict[str, Any] = {"ModelName": name, "PrimaryContainer": container,
                             "ExecutionRoleArn": outputs["sagemakerExecutionRoleArn"],
                             "Tags": [{"Key": "project", "Value": "dicom-annotate"}]}
    vpc = vpc_config(outputs)
    if vpc:
        model["VpcConfig"] = vpc
    config: dict[str, Any] = {
        "EndpointConfigName": name,
        "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": name, "InstanceType": instance_type,
                                "InitialInstanceCount": count, "InitialVariantWeight": 1.0}],
        "Tags": [{"Key": "project", "Value": "dicom-annotate"}],
    }
    if not has_local_nvme(instance_type):
        config["KmsKeyId"] = outputs["kmsKeyArn"]
    endpoint = {"EndpointName": name, "EndpointConfigName": name,
                "Tags": [{"Key": "project", "Value": "dicom-annotate"}]}
    return {"create_model": model, "create_endpoint_config": config, "create_endpoint": endpoint}


# ================================================================================ AWS helpers

def _client(service: str, region: str) -> Any:
    """A boto3 client (tests replace this function)."""
    import boto3

    return boto3.client(service, region_name=region)


def _is_not_found(exc: AwsError) -> bool:
    text = str(exc)
    return "ValidationException" in text and ("Could not find" in text or "does not exist" in text)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _parse_hyperparameters(items: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[a-z][a-z0-9-]*", key):
            raise SageMakerCliError(f"--hyperparameter: {item!r} is not KEY=VALUE with a kebab-case KEY")
        if key.startswith("sagemaker"):
            raise SageMakerCliError(f"--hyperparameter: {key!r} is reserved for the container")
        out[key] = value
    return out


def _s3_uri(value: str, flag: str) -> tuple[str, str]:
    match = re.fullmatch(r"s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(.*)", value)
    if not match:
        raise SageMakerCliError(f"{flag}: {value!r} is not an s3://bucket/key URI")
    return match[1], match[2]


# ================================================================================== commands

def _cmd_train(args: argparse.Namespace) -> int:
    outputs = load_stack_outputs(stack=args.stack, path=args.stack_outputs)
    region = region_of(outputs, args.region)
    job_name = validate_name(args.job_name or default_job_name(), "--job-name")
    bucket, kms = outputs["annotationBucket"], outputs["kmsKeyArn"]
    hyper = _parse_hyperparameters(args.hyperparameter or ())
    label_attribute = args.label_attribute
    images = args.images
    if images:
        _s3_uri(images, "--images")
    manifest_body: Optional[bytes] = None
    if args.manifest.startswith("s3://"):
        _s3_uri(args.manifest, "--manifest")
        manifest_uri = args.manifest
        if not images:
            raise SageMakerCliError("--images: needed with an S3 --manifest (the staged images' S3 prefix)")
    else:
        from labeling.gt.output_manifest import OutputManifestError, scan_output_manifest

        try:
            scan = scan_output_manifest(args.manifest, label_attribute)
        except OutputManifestError as exc:
            raise SageMakerCliError(str(exc)) from None
        if not scan.records:
            raise SageMakerCliError(f"{args.manifest}: no labelled line; nothing to train on")
        label_attribute = label_attribute or scan.label_attribute
        if not images:
            jobs = {r.job_name for r in scan.records if r.job_name}
            if len(jobs) != 1:
                raise SageMakerCliError(f"--images: cannot derive the staged images' prefix from the manifest "
                                        f"(job names {sorted(jobs)}); give --images s3://…/")
            images = f"s3://{bucket}/{jobs.pop().removeprefix('labeling-job/')}/"
        manifest_body = Path(args.manifest).read_bytes()
        manifest_uri = f"s3://{bucket}/training/{job_name}/manifest/output.manifest"
        print(f"{args.manifest}: {len(scan.records)} labelled lines, {len(scan.failed)} failed "
              f"(label attribute {label_attribute!r})", file=sys.stderr)
    _s3_uri(images, "--images")
    images = images if images.endswith("/") else images + "/"

    archive = build_source_archive()
    source_uri = f"s3://{bucket}/{source_key(archive)}"
    request = training_job_request(
        outputs=outputs, region=region, job_name=job_name, source_uri=source_uri, manifest_uri=manifest_uri,
        images_uri=images, label_attribute=label_attribute, epochs=args.epochs, hyperparameters=hyper,
        instance_type=args.instance_type, volume_gb=args.volume_gb, max_runtime=args.max_runtime,
        spot=args.spot, max_wait=args.max_wait, image=args.training_image)
    if args.dry_run:
        _print_json({"upload": [{"uri": source_uri, "bytes": len(archive)},
                                *([{"uri": manifest_uri, "bytes": len(manifest_body)}] if manifest_body else [])],
                     "create_training_job": request})
        print("dry run: nothing uploaded, no job created", file=sys.stderr)
        return 0

    s3 = _client("s3", region)
    sse = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms}
    aws_call(f"upload {source_uri}", s3.put_object, Bucket=bucket, Key=_s3_uri(source_uri, "source")[1],
              Body=archive, ContentType="application/gzip", **sse)
    if manifest_body is not None:
        aws_call(f"upload {manifest_uri}", s3.put_object, Bucket=bucket, Key=_s3_uri(manifest_uri, "manifest")[1],
                  Body=manifest_body, ContentType="application/jsonlines", **sse)
    sagemaker = _client("sagemaker", region)
    response = aws_call(f"create_training_job {job_name}", sagemaker.create_training_job, **request)
    print(response["TrainingJobArn"])
    return 0


def _model_data(sagemaker: Any, job_name: str) -> str:
    job = aws_call(f"describe_training_job {job_name}", sagemaker.describe_training_job, TrainingJobName=job_name)
    status = job.get("TrainingJobStatus")
    uri = (job.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if status != "Completed" or not uri:
        raise SageMakerCliError(f"--training-job {job_name}: status {status}; deploy needs a Completed job "
                                "with model artefacts")
    return uri


def _cmd_deploy(args: argparse.Namespace) -> int:
    outputs = load_stack_outputs(stack=args.stack, path=args.stack_outputs)
    region = region_of(outputs, args.region)
    job = validate_name(args.training_job, "--training-job")
    name = validate_name(args.endpoint_name or job, "--endpoint-name")
    if args.dry_run:
        model_data = args.model_data or f"<describe_training_job({job}).ModelArtifacts.S3ModelArtifacts>"
        requests = deploy_requests(outputs=outputs, region=region, name=name, model_data=model_data,
                                   instance_type=args.instance_type, count=args.instance_count,
                                   image=args.inference_image)
        _print_json(requests)
        print("dry run: nothing created", file=sys.stderr)
        return 0
    sagemaker = _client("sagemaker", region)
    model_data = args.model_data or _model_data(sagemaker, job)
    if args.model_data:
        _s3_uri(args.model_data, "--model-data")
    requests = deploy_requests(outputs=outputs, region=region, name=name, model_data=model_data,
                               instance_type=args.instance_type, count=args.instance_count,
                               image=args.inference_image)
    aws_call(f"create_model {name}", sagemaker.create_model, **requests["create_model"])
    aws_call(f"create_endpoint_config {name}", sagemaker.create_endpoint_config,
              **requests["create_endpoint_config"])
    try:
        aws_call(f"describe_endpoint {name}", sagemaker.describe_endpoint, EndpointName=name)
        exists = True
    except AwsError as exc:
        if not _is_not_found(exc):
            raise
        exists = False
    if exists:
        response = aws_call(f"update_endpoint {name}", sagemaker.update_endpoint, EndpointName=name,
                             EndpointConfigName=name)
    else:
        response = aws_call(f"create_endpoint {name}", sagemaker.create_endpoint, **requests["create_endpoint"])
    print(response["EndpointArn"])
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    outputs = load_stack_outputs(stack=args.stack, path=args.stack_outputs)
    region = region_of(outputs, args.region)
    name = validate_name(args.endpoint_name, "--endpoint-name")
    if args.dry_run:
        _print_json({"delete_endpoint": {"EndpointName": name},
                     "then": "delete_endpoint_config + delete_model for the endpoint's configuration"
                             + (" (kept: --keep-model)" if args.keep_model else "")})
        return 0
    sagemaker = _client("sagemaker", region)
    endpoint = aws_call(f"describe_endpoint {name}", sagemaker.describe_endpoint, EndpointName=name)
    config_name = endpoint["EndpointConfigName"]
    config = aws_call(f"describe_endpoint_config {config_name}", sagemaker.describe_endpoint_config,
                       EndpointConfigName=config_name)
    aws_call(f"delete_endpoint {name}", sagemaker.delete_endpoint, EndpointName=name)
    print(f"deleted endpoint {name}")
    if not args.keep_model:
        aws_call(f"delete_endpoint_config {config_name}", sagemaker.delete_endpoint_config,
                  EndpointConfigName=config_name)
        print(f"deleted endpoint config {config_name}")
        for variant in config.get("ProductionVariants", []):
            aws_call(f"delete_model {variant['ModelName']}", sagemaker.delete_model, ModelName=variant["ModelName"])
            print(f"deleted model {variant['ModelName']}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    if not args.training_job and not args.endpoint_name:
        raise SageMakerCliError("give --training-job NAME and/or --endpoint-name NAME")
    outputs = load_stack_outputs(stack=args.stack, path=args.stack_outputs)
    region = region_of(outputs, args.region)
    rows: list[tuple[str, Any]] = []
    if args.dry_run:
        _print_json({k: v for k, v in (("describe_training_job", args.training_job and
                                        {"TrainingJobName": args.training_job}),
                                       ("describe_endpoint", args.endpoint_name and
                                        {"EndpointName": args.endpoint_name})) if v})
        return 0
    sagemaker = _client("sagemaker", region)
    if args.training_job:
        job = aws_call(f"describe_training_job {args.training_job}", sagemaker.describe_training_job,
                        TrainingJobName=validate_name(args.training_job, "--training-job"))
        metrics = {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList", [])}
        rows += [("training job", job.get("TrainingJobName")), ("status", job.get("TrainingJobStatus")),
                 ("secondary status", job.get("SecondaryStatus", "-")),
                 ("started", job.get("TrainingStartTime", "-")), ("ended", job.get("TrainingEndTime", "-")),
                 ("billable seconds", job.get("BillableTimeInSeconds", "-")),
                 ("model artefacts", (job.get("ModelArtifacts") or {}).get("S3ModelArtifacts", "-")),
                 ("final metrics", json.dumps(metrics) if metrics else "-"),
                 ("failure reason", job.get("FailureReason") or "-")]
    if args.endpoint_name:
        endpoint = aws_call(f"describe_endpoint {args.endpoint_name}", sagemaker.describe_endpoint,
                             EndpointName=validate_name(args.endpoint_name, "--endpoint-name"))
        rows += [("endpoint", endpoint.get("EndpointName")), ("status", endpoint.get("EndpointStatus")),
                 ("config", endpoint.get("EndpointConfigName")),
                 ("last modified", endpoint.get("LastModifiedTime", "-")),
                 ("failure reason", endpoint.get("FailureReason") or "-")]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


# ======================================================================================= CLI

_run = bad_input_errors(SageMakerCliError)


def _common(p: argparse.ArgumentParser) -> None:
    stack = p.add_mutually_exclusive_group(required=True)
    stack.add_argument("--stack", help="Pulumi stack (its outputs are read with `pulumi stack output --json`)")
    stack.add_argument("--stack-outputs", metavar="JSON_FILE", help="`pulumi stack output --json` saved to a file")
    p.add_argument("--region", help="AWS region (default: the region of the stack's kmsKeyArn)")
    p.add_argument("--dry-run", action="store_true", help="print the requests as JSON; touch nothing")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sagemaker",
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="sagemaker_command", metavar="SAGEMAKER_COMMAND", required=True)

    t = sub.add_parser("train", help="create a SageMaker training job on an output manifest")
    _common(t)
    t.add_argument("--manifest", required=True, help="output manifest: a local file (checked, uploaded) or s3:// URI")
    t.add_argument("--images", metavar="S3_PREFIX",
                   help="staged <orthanc id>.dcm files (default: s3://<annotationBucket>/<labeling job>/)")
    t.add_argument("--label-attribute", help="label attribute (default: inferred from a local manifest)")
    t.add_argument("--job-name", help="training job name (default dicom-annotate-<UTC time>)")
    t.add_argument("--epochs", type=positive_int, help="training epochs (default: the training script's)")
    t.add_argument("--hyperparameter", action="append", metavar="KEY=VALUE",
                   help="any other training flag, e.g. batch-size=16 (repeatable)")
    t.add_argument("--instance-type", default=DEFAULT_TRAIN_INSTANCE,
                   help=f"(default {DEFAULT_TRAIN_INSTANCE}; ml.g*/ml.p* take the GPU image)")
    t.add_argument("--volume-gb", type=positive_int, default=DEFAULT_VOLUME_GB,
                   help=f"storage attached to the training instance, in GB (default {DEFAULT_VOLUME_GB})")
    t.add_argument("--max-runtime", type=positive_int, default=DEFAULT_MAX_RUNTIME_S, metavar="SECONDS",
                   help=f"stop the job after SECONDS (default {DEFAULT_MAX_RUNTIME_S})")
    t.add_argument("--spot", action="store_true", help="managed spot training (checkpoints in S3)")
    t.add_argument("--max-wait", type=positive_int, metavar="SECONDS", help="spot: (default 2 x --max-runtime)")
    t.add_argument("--training-image", help=f"image URI (default: {TRAINING_IMAGE.repository} {TRAINING_IMAGE.version})")
    t.set_defaults(func=_run(_cmd_train))

    d = sub.add_parser("deploy", help="deploy a training job's model to a real-time endpoint")
    _common(d)
    d.add_argument("--training-job", required=True, help="the completed training job whose model to deploy")
    d.add_argument("--endpoint-name", help="(default: the training job name; also the model and config name)")
    d.add_argument("--model-data", metavar="S3_URI", help="model.tar.gz (default: the job's model artefacts)")
    d.add_argument("--instance-type", default=DEFAULT_ENDPOINT_INSTANCE,
                   help=f"endpoint instance type (default {DEFAULT_ENDPOINT_INSTANCE})")
    d.add_argument("--instance-count", type=positive_int, default=1, help="endpoint instances (default 1)")
    d.add_argument("--inference-image",
                   help=f"image URI (default: {INFERENCE_IMAGE.repository} {INFERENCE_IMAGE.version})")
    d.set_defaults(func=_run(_cmd_deploy))

    x = sub.add_parser("delete", help="delete an endpoint (and its config and model)")
    _common(x)
    x.add_argument("--endpoint-name", required=True, help="the endpoint to delete")
    x.add_argument("--keep-model", action="store_true", help="delete only the endpoint")
    x.set_defaults(func=_run(_cmd_delete))

    s = sub.add_parser("status", help="describe a training job and/or an endpoint")
    _common(s)
    s.add_argument("--training-job", help="training job to describe")
    s.add_argument("--endpoint-name", help="endpoint to describe")
    s.set_defaults(func=_run(_cmd_status))
