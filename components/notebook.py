"""TrainingNotebook: the SageMaker execution role for training and the notebook instance.

Declares the role (the annotation bucket, DLC images, training jobs and endpoints of this account,
its own idle stop), a no-ingress security group, the project's code copied into the annotation
bucket, the lifecycle configuration (on-create installs MONAI + PyTorch; on-start unpacks the code
and installs the idle auto-stop check), the notebook instance in a private subnet (no direct
internet, no root) and an alarm when the idle stop reports itself broken.

Until the split these were children of the ``LabelingBundle`` (now :mod:`components.ground_truth`):
each carries an alias to that parent (``moved_from_urn``), so a deployed notebook is kept.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pulumi
import pulumi_aws as aws

from components.iam import service_role_trust
from components.moved import moved_from
from components.network import https_only_security_group
from components.packaging import ROOT, package_archive
from components.storage import bucket_statements
from training.dlc import registry_account

TYPE = "dicom-annotate:notebook:TrainingNotebook"
NOTEBOOK_PLATFORM = "notebook-al2023-v1"
# Interpreters that carry boto3 on each notebook platform, in the order the idle check tries them:
# the JupyterSystemEnv conda environment SageMaker installs on every notebook platform, then the
# OS Python (AWS's auto-stop sample does the same and also exits when neither has boto3:
# github.com/aws-samples/amazon-sagemaker-notebook-instance-lifecycle-config-samples,
# scripts/auto-stop-idle/on-start.sh). Platforms: https://docs.aws.amazon.com/sagemaker/latest/dg/nbi-al2023.html
NOTEBOOK_PLATFORM_PYTHONS = {
    "notebook-al2023-v1": ("/home/ec2-user/anaconda3/envs/JupyterSystemEnv/bin/python", "/usr/bin/python3"),
    "notebook-al2-v3": ("/home/ec2-user/anaconda3/envs/JupyterSystemEnv/bin/python", "/usr/bin/python3"),
}
# The project copy the notebook's on-start script unpacks (training/, labeling/, devkit/, the walkthrough).
NOTEBOOK_CODE_KEY = "notebook/dicom-annotate.zip"
# SageMaker caps each lifecycle script at 16,384 characters of base64.
MAX_LIFECYCLE_SCRIPT_B64 = 16_384
# The notebook's idle-stop check reports here (training/notebook_lifecycle_on_start.sh).
METRIC_NAMESPACE = "dicom-annotate/Notebook"



@dataclass
class TrainingNotebookArgs:
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[list]
    kms_key_arn: pulumi.Input[str]
    # Ground Truth's annotation bucket: training data in, models and the code copy.
    annotation_bucket_id: pulumi.Input[str]
    annotation_bucket_name: pulumi.Input[str]
    annotation_bucket_arn: pulumi.Input[str]
    instance_type: str
    idle_minutes: int
    volume_gb: int
    tags: dict[str, str] = field(default_factory=dict)
    # The URN of the component that declared these resources before (components/moved.py).
    moved_from_urn: Optional[str] = None
    training_requirements_path: Path = ROOT / "training" / "requirements-notebook.txt"
    lifecycle_on_create_path: Path = ROOT / "training" / "notebook_lifecycle_on_create.sh"
    lifecycle_on_start_path: Path = ROOT / "training" / "notebook_lifecycle_on_start.sh"


class TrainingNotebook(pulumi.ComponentResource):
    """SageMaker execution role, notebook instance with its lifecycle, idle-stop alarm."""

    def __init__(self, name: str, args: TrainingNotebookArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE, name, None, opts)
        self._child = pulumi.ResourceOptions(parent=self, aliases=moved_from(args.moved_from_urn))
        self._notebook_name = _sagemaker_name(f"{name}-notebook")

        self._role(name, args)
        self._lifecycle(name, args)
        self._instance(name, args)

        self.sagemaker_execution_role_arn = self.sagemaker_execution_role.arn
        self.notebook_instance_name = self.notebook.name
        self.register_outputs({
            "sagemaker_execution_role_arn": self.sagemaker_execution_role_arn,
            "notebook_instance_name": self.notebook_instance_name,
        })

    def _role(self, name: str, args: TrainingNotebookArgs) -> None:
        """The SageMaker execution role and its policy (this notebook's own idle stop included)."""
        child, notebook_name = self._child, self._notebook_name
        account = aws.get_caller_identity_output().account_id
        region = aws.get_region_output().region
        partition = aws.get_partition_output().partition
        self.sagemaker_execution_role = aws.iam.Role(
            f"{name}-sagemaker-role",
            description="SageMaker training jobs and the notebook instance of dicom-annotate",
            assume_role_policy=json.dumps(service_role_trust("sagemaker.amazonaws.com")),
            tags=args.tags,
            opts=child,
        )
        self._sagemaker_policy = aws.iam.RolePolicy(
            f"{name}-sagemaker-policy",
            role=self.sagemaker_execution_role.id,
            policy=pulumi.Output.all(
                args.annotation_bucket_arn, args.kms_key_arn, self.sagemaker_execution_role.arn, account, region, partition,
            ).apply(lambda v: json.dumps(sagemaker_execution_policy(
                bucket_arn=v[0], key_arn=v[1], role_arn=v[2], notebook_name=notebook_name, account=v[3],
                region=v[4], partition=v[5]))),
            opts=pulumi.ResourceOptions(parent=self.sagemaker_execution_role),
        )

    def _lifecycle(self, name: str, args: TrainingNotebookArgs) -> None:
        """No-ingress SG, the project's code in the bucket, the lifecycle scripts (16 KB base64 each at most)."""
        child = self._child
        self.notebook_security_group = https_only_security_group(
            f"{name}-notebook", vpc_id=args.vpc_id,
            description="Training notebook: no ingress (opened through the SageMaker console); HTTPS out",
            egress_description="PyPI and AWS APIs via NAT or VPC endpoints", tags=args.tags, opts=child)
        requirements = _training_requirements(args.training_requirements_path)
        # The project's code and walkthrough notebook, copied onto the instance at every start.
        self.notebook_code = aws.s3.BucketObjectv2(
            f"{name}-notebook-code",
            bucket=args.annotation_bucket_id,
            key=NOTEBOOK_CODE_KEY,
            source=package_archive("training", "labeling", "devkit"),  # devkit: the walkthrough's synthetic data
            content_type="application/zip",
            server_side_encryption="aws:kms",
            kms_key_id=args.kms_key_arn,
            tags=args.tags,
            opts=child,
        )
        script_values = {
            "__IDLE_MINUTES__": str(int(args.idle_minutes)),
            "__TRAINING_REQUIREMENTS__": requirements,
            "__IDLE_PYTHONS__": " ".join(notebook_pythons(NOTEBOOK_PLATFORM)),
            "__METRIC_NAMESPACE__": METRIC_NAMESPACE,
        }
        self.lifecycle_config = aws.sagemaker.NotebookInstanceLifecycleConfiguration(
            f"{name}-notebook-lifecycle",
            name=_sagemaker_name(f"{name}-lifecycle"),
            on_create=lifecycle_script_b64(args.lifecycle_on_create_path, script_values),
            on_start=pulumi.Output.concat("s3://", args.annotation_bucket_name, "/", NOTEBOOK_CODE_KEY).apply(
                lambda uri: lifecycle_script_b64(args.lifecycle_on_start_path,
                                                 {**script_values, "__CODE_S3_URI__": uri})),
            tags=args.tags,
            opts=child,
        )

    def _instance(self, name: str, args: TrainingNotebookArgs) -> None:
        """The notebook instance (private subnet, no direct internet, no root) and its idle-stop alarm."""
        child, notebook_name = self._child, self._notebook_name
        self.notebook = aws.sagemaker.NotebookInstance(
            f"{name}-notebook",
            name=notebook_name,
            instance_type=args.instance_type,
            role_arn=self.sagemaker_execution_role.arn,
            platform_identifier=NOTEBOOK_PLATFORM,
            subnet_id=pulumi.Output.from_input(args.private_subnet_ids).apply(lambda ids: ids[0]),
            security_groups=[self.notebook_security_group.id],
            # Always off, dev included: the private subnets reach PyPI and AWS through NAT/endpoints,
            # so there is nothing direct access would add but an unfiltered path out.
            direct_internet_access="Disabled",
            root_access="Disabled",
            kms_key_id=args.kms_key_arn,
            volume_size=args.volume_gb,
            instance_metadata_service_configuration=aws.sagemaker.NotebookInstanceInstanceMetadataServiceConfigurationArgs(
                minimum_instance_metadata_service_version="2"),
            lifecycle_config_name=self.lifecycle_config.name,
            tags=args.tags,
            # The name is fixed (the idle-stop grant names it), so a replacement must delete first.
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(
                depends_on=[self._sagemaker_policy], delete_before_replace=True)),
        )

        # The idle check reports its failures (components: lifecycle on-start, section 2): a notebook
        # that cannot stop itself costs ~5x its planned hours.
        self.idle_stop_alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-notebook-idle-stop-alarm",
            name=f"{name}-notebook-idle-stop-broken",
            alarm_description="The notebook's idle auto-stop failed: it keeps running (and billing) until stopped",
            namespace=METRIC_NAMESPACE, metric_name="IdleStopBroken",
            dimensions={"NotebookInstanceName": notebook_name},
            statistic="Maximum", period=300, evaluation_periods=1, threshold=1,
            comparison_operator="GreaterThanOrEqualToThreshold",
            treat_missing_data="notBreaching",  # no report while the instance is stopped is normal
            tags=args.tags, opts=child)

# ---------------------------------------------------------------------- documents (pure functions)
def _sagemaker_name(text: str) -> str:
    """SageMaker names: letters, digits, single hyphens, at most 63 characters."""
    return text[:63].rstrip("-")


def notebook_pythons(platform: str) -> tuple[str, ...]:
    """The idle check's interpreter candidates for a notebook platform identifier."""
    if platform not in NOTEBOOK_PLATFORM_PYTHONS:
        raise ValueError(f"notebook platform {platform!r}: no known Python with boto3 for the idle check "
                         f"(known: {', '.join(NOTEBOOK_PLATFORM_PYTHONS)}); add it to NOTEBOOK_PLATFORM_PYTHONS")
    return NOTEBOOK_PLATFORM_PYTHONS[platform]


def _training_requirements(path: Path) -> str:
    """The notebook's requirements file with ``-r other.txt`` lines replaced by that file's lines."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the notebook's requirements file is missing")
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("-r "):
            lines.append(_training_requirements(path.parent / line[3:].strip()))
        elif line.strip() and not line.lstrip().startswith("#"):
            lines.append(line)
    return "\n".join(lines)


def render_lifecycle_script(path: Path, values: dict[str, str]) -> str:
    """The lifecycle script with its ``__PLACEHOLDERS__`` filled in; every one must be given."""
    text = path.read_text(encoding="utf-8")
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    left = sorted(set(re.findall(r"__[A-Z_]+__", text)))
    if left:
        raise ValueError(f"{path}: placeholders without a value: {', '.join(left)}")
    return text


def lifecycle_script_b64(path: Path, values: dict[str, str]) -> str:
    encoded = base64.b64encode(render_lifecycle_script(path, values).encode()).decode()
    if len(encoded) > MAX_LIFECYCLE_SCRIPT_B64:
        raise ValueError(f"{path}: {len(encoded)} base64 characters once rendered; SageMaker accepts at "
                         f"most {MAX_LIFECYCLE_SCRIPT_B64} (shorten the script or the requirements)")
    return encoded


def sagemaker_execution_policy(bucket_arn: str, key_arn: str, role_arn: str, notebook_name: str,
                               account: str, region: str, partition: str) -> dict[str, Any]:
    """Training jobs and the notebook: data, DLC images, logs, jobs of this account, idle stop."""
    arn = f"arn:{partition}:sagemaker:{region}:{account}"
    log_group = f"arn:{partition}:logs:{region}:{account}:log-group:/aws/sagemaker/*"
    return {"Version": "2012-10-17", "Statement": [
        *bucket_statements(bucket_arn, ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]),
        {"Sid": "Key", "Effect": "Allow", "Resource": key_arn,
         "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]},
        {"Sid": "KeyGrantsForVolumes", "Effect": "Allow", "Action": "kms:CreateGrant", "Resource": key_arn,
         "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}},
        # GetAuthorizationToken has no resource-level scoping; pulls are limited to AWS DLC images.
        {"Sid": "EcrToken", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
        {"Sid": "PullDeepLearningContainers", "Effect": "Allow",
         "Action": ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
         # The DLC registry account of this region, from the SageMaker SDK's table (training/dlc.py).
         "Resource": f"arn:{partition}:ecr:{region}:{registry_account(region)}:repository/*"},
        {"Sid": "SageMakerLogs", "Effect": "Allow", "Resource": [log_group, f"{log_group}:*"],
         "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                    "logs:DescribeLogStreams"]},
        {"Sid": "TrainingJobs", "Effect": "Allow",
         "Resource": [f"{arn}:training-job/*", f"{arn}:processing-job/*", f"{arn}:model/*"],
         "Action": ["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
                    "sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob",
                    "sagemaker:StopProcessingJob", "sagemaker:CreateModel", "sagemaker:DescribeModel",
                    "sagemaker:DeleteModel", "sagemaker:AddTags"]},
        # `python -m training sagemaker deploy|delete|status` from the notebook: the endpoint, its
        # configuration (resource types per the SageMaker service authorization reference).
        {"Sid": "Endpoints", "Effect": "Allow",
         "Resource": [f"{arn}:endpoint/*", f"{arn}:endpoint-config/*"],
         "Action": ["sagemaker:CreateEndpoint", "sagemaker:CreateEndpointConfig", "sagemaker:DescribeEndpoint",
                    "sagemaker:DescribeEndpointConfig", "sagemaker:UpdateEndpoint", "sagemaker:DeleteEndpoint",
                    "sagemaker:DeleteEndpointConfig", "sagemaker:AddTags"]},
        # Training metrics and the notebook's idle-stop health metric; PutMetricData takes no
        # resource scoping, so the namespaces are limited instead.
        {"Sid": "Metrics", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
         "Condition": {"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", METRIC_NAMESPACE]}}},
        # Jobs started from the notebook run under this same role, and only SageMaker may receive it.
        {"Sid": "PassOwnRoleToSageMaker", "Effect": "Allow", "Action": "iam:PassRole", "Resource": role_arn,
         "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}},
        # The lifecycle's idle check stops its own instance (ARNs use the lower-cased name).
        {"Sid": "IdleStopOwnNotebook", "Effect": "Allow",
         "Action": ["sagemaker:StopNotebookInstance", "sagemaker:DescribeNotebookInstance"],
         "Resource": f"{arn}:notebook-instance/{notebook_name.lower()}"},
        # Training jobs placed in the VPC attach ENIs; these EC2 actions take no resource scoping.
        {"Sid": "VpcTrainingJobs", "Effect": "Allow", "Resource": "*", "Action": [
            "ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface",
            "ec2:DeleteNetworkInterfacePermission", "ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs",
            "ec2:DescribeDhcpOptions", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups"]},
    ]}
