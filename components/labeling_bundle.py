"""LabelingBundle: everything the Ground Truth backend and model training need next to Orthanc.

- the annotation bucket (project bucket floor, plus CORS for the GT worker portal),
- the pre- and post-annotation Lambdas (private subnets, reach Orthanc through its client security
  group), each with its own role, KMS-encrypted log group and an invoke grant for SageMaker,
- the GT labeling execution role (explicit grants: GT's managed policy is name-based and too wide),
- the worker task template in the bucket, rendered with the URL of the viewer asset location
  (:class:`components.viewer_cdn.ViewerAssetsCdn`: S3 behind CloudFront with OAC) and its SRI hash,
- a SageMaker execution role for training and a notebook instance with a lifecycle configuration.

The component only declares resources; the contracts the Lambdas implement live in
``labeling/gt/contracts.py``.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.config import StackConfig
from components.packaging import LAMBDA_RUNTIME, ROOT, package_archive
from components.storage import SecureBucket, SecureBucketArgs, encrypted_log_group
from components.viewer_cdn import ViewerAssetsCdn, ViewerAssetsCdnArgs
from labeling.gt import viewer_assets
from training.dlc import registry_account

TEMPLATE_KEY = "templates/worker_template.liquid.html"
LAMBDA_HANDLER = "handler.lambda_handler"
LAMBDA_ARCHITECTURE = "x86_64"  # the dependency layer is built from manylinux2014/manylinux_2_28 x86_64 wheels
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
LAMBDA_ROLE_NAMES = ("prelabel", "postlabel")
# The notebook's idle-stop check reports here (training/notebook_lifecycle_on_start.sh).
METRIC_NAMESPACE = "dicom-annotate/Notebook"


@dataclass
class LabelingBundleArgs:
    config: StackConfig
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[list]
    orthanc_url: pulumi.Input[str]
    orthanc_secret_arn: pulumi.Input[str]
    orthanc_client_security_group_id: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    prelabel_code: pulumi.Archive
    postlabel_code: pulumi.Archive
    dependency_layer: pulumi.Archive
    tags: dict[str, str] = field(default_factory=dict)
    # None leaves the functions on the account's unreserved pool.
    reserved_concurrency: Optional[int] = None
    training_requirements_path: Path = ROOT / "training" / "requirements-notebook.txt"
    lifecycle_on_create_path: Path = ROOT / "training" / "notebook_lifecycle_on_create.sh"
    lifecycle_on_start_path: Path = ROOT / "training" / "notebook_lifecycle_on_start.sh"


class LabelingBundle(pulumi.ComponentResource):
    """Annotation bucket, GT Lambdas and role, worker template, training role and notebook."""

    def __init__(self, name: str, args: LabelingBundleArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("dicom-annotate:labeling:LabelingBundle", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        config = args.config
        identity = aws.get_caller_identity_output()
        account = identity.account_id
        region = aws.get_region_output().region
        partition = aws.get_partition_output().partition

        # ---- annotation bucket: manifests, staged images, template, answers, output manifests
        self.bucket = SecureBucket(
            f"{name}-annotations",
            SecureBucketArgs(
                kms_key_arn=args.kms_key_arn,
                # GT's worker portal fetches images and the template from the browser (GT docs,
                # "CORS requirement"): it must be able to read Access-Control-Allow-Origin.
                cors_rules=[aws.s3.BucketCorsConfigurationCorsRuleArgs(
                    allowed_methods=["GET", "HEAD"],
                    allowed_origins=list(config.gt_worker_origins),
                    allowed_headers=[],
                    expose_headers=["Access-Control-Allow-Origin"],
                    max_age_seconds=3000,
                )],
                tags=args.tags,
            ),
            opts=child,
        )

        # ---- de-identification salt: keyed UID replacement must not be reproducible by outsiders
        salt = random.RandomPassword(f"{name}-deid-salt", length=48, special=False, opts=child)
        self.salt_secret = aws.secretsmanager.Secret(
            f"{name}-deid-salt-secret", description="Salt for de-identified UIDs (pre-label Lambda, portal)",
            kms_key_id=args.kms_key_arn, recovery_window_in_days=30 if config.environment == "prod" else 7,
            tags=args.tags, opts=child)
        aws.secretsmanager.SecretVersion(f"{name}-deid-salt-value", secret_id=self.salt_secret.id,
                                         secret_string=salt.result,
                                         opts=pulumi.ResourceOptions(parent=self.salt_secret))

        # ---- Lambdas: dependency layer, egress-only SG, one role + log group + function each
        self.layer = aws.lambda_.LayerVersion(
            f"{name}-deps",
            layer_name=f"{name}-deps",
            code=args.dependency_layer,
            compatible_runtimes=[LAMBDA_RUNTIME],
            compatible_architectures=[LAMBDA_ARCHITECTURE],
            description="dicom-annotate Lambda dependencies (make lambda-layer)",
            opts=child,
        )
        # Orthanc is reached through the Orthanc client security group attached beside this one.
        self.lambda_security_group = _https_only_security_group(
            f"{name}-lambda", args, "GT pre/post-label Lambdas: no ingress; HTTPS out to AWS APIs",
            "AWS APIs (S3, Secrets Manager, X-Ray) via NAT or VPC endpoints", child)
        functions = {}
        for function, code in (("prelabel", args.prelabel_code), ("postlabel", args.postlabel_code)):
            functions[function] = self._lambda(name, function, code, args, account, region, partition, child)
        self.prelabel_function, self.postlabel_function = functions["prelabel"], functions["postlabel"]

        # ---- GT labeling execution role: explicit grants on this bundle's resources only
        self.ground_truth_role = aws.iam.Role(
            f"{name}-gt-role",
            description="SageMaker Ground Truth labeling jobs of dicom-annotate",
            assume_role_policy=json.dumps(service_role_trust("sagemaker.amazonaws.com")),
            tags=args.tags,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-gt-policy",
            role=self.ground_truth_role.id,
            policy=pulumi.Output.all(
                self.bucket.arn, args.kms_key_arn, self.prelabel_function.arn, self.postlabel_function.arn,
                account, region, partition,
            ).apply(lambda v: json.dumps(ground_truth_policy(
                bucket_arn=v[0], key_arn=v[1], function_arns=[v[2], v[3]], account=v[4], region=v[5],
                partition=v[6]))),
            opts=pulumi.ResourceOptions(parent=self.ground_truth_role),
        )

        # ---- viewer asset location; the template loads the bundle from it (with SRI)
        # asset_files() raises ViewerAssetsError ("run `make viewer`") when build/viewer is missing.
        self.viewer = ViewerAssetsCdn(
            f"{name}-viewer",
            ViewerAssetsCdnArgs(
                assets=viewer_assets.asset_files(),
                cors_origins=list(config.gt_worker_origins),
                domain=config.viewer_assets_domain,
                certificate_arn=config.viewer_assets_certificate_arn,
                deletion_window_days=30 if config.environment == "prod" else 7,
                tags=args.tags),
            opts=child)

        # ---- worker task template (GT reads it from S3 by URI); only its content waits for the URL
        self.template_object = aws.s3.BucketObjectv2(
            f"{name}-worker-template",
            bucket=self.bucket.id,
            key=TEMPLATE_KEY,
            # The viewer's URL and SRI filled in; raises past GT's size limit (labeling.gt.viewer_assets).
            content=self.viewer.base_url.apply(viewer_assets.render_worker_template),
            content_type="text/html; charset=utf-8",
            server_side_encryption="aws:kms",
            kms_key_id=args.kms_key_arn,
            tags=args.tags,
            opts=child,
        )

        # ---- training: SageMaker execution role and the notebook instance
        notebook_name = _sagemaker_name(f"{name}-notebook")
        self.sagemaker_execution_role = aws.iam.Role(
            f"{name}-sagemaker-role",
            description="SageMaker training jobs and the notebook instance of dicom-annotate",
            assume_role_policy=json.dumps(service_role_trust("sagemaker.amazonaws.com")),
            tags=args.tags,
            opts=child,
        )
        sagemaker_policy = aws.iam.RolePolicy(
            f"{name}-sagemaker-policy",
            role=self.sagemaker_execution_role.id,
            policy=pulumi.Output.all(
                self.bucket.arn, args.kms_key_arn, self.sagemaker_execution_role.arn, account, region, partition,
            ).apply(lambda v: json.dumps(sagemaker_execution_policy(
                bucket_arn=v[0], key_arn=v[1], role_arn=v[2], notebook_name=notebook_name, account=v[3],
                region=v[4], partition=v[5]))),
            opts=pulumi.ResourceOptions(parent=self.sagemaker_execution_role),
        )
        self.notebook_security_group = _https_only_security_group(
            f"{name}-notebook", args, "Training notebook: no ingress (opened through the SageMaker console); HTTPS out",
            "PyPI and AWS APIs via NAT or VPC endpoints", child)
        requirements = _training_requirements(args.training_requirements_path)
        # The project's code and walkthrough notebook, copied onto the instance at every start.
        self.notebook_code = aws.s3.BucketObjectv2(
            f"{name}-notebook-code",
            bucket=self.bucket.id,
            key=NOTEBOOK_CODE_KEY,
            source=package_archive("training", "labeling", "devkit"),  # devkit: the walkthrough's synthetic data
            content_type="application/zip",
            server_side_encryption="aws:kms",
            kms_key_id=args.kms_key_arn,
            tags=args.tags,
            opts=child,
        )
        script_values = {
            "__IDLE_MINUTES__": str(int(config.notebook_idle_minutes)),
            "__TRAINING_REQUIREMENTS__": requirements,
            "__IDLE_PYTHONS__": " ".join(notebook_pythons(NOTEBOOK_PLATFORM)),
            "__METRIC_NAMESPACE__": METRIC_NAMESPACE,
        }
        self.lifecycle_config = aws.sagemaker.NotebookInstanceLifecycleConfiguration(
            f"{name}-notebook-lifecycle",
            name=_sagemaker_name(f"{name}-lifecycle"),
            on_create=lifecycle_script_b64(args.lifecycle_on_create_path, script_values),
            on_start=pulumi.Output.concat("s3://", self.bucket.name, "/", NOTEBOOK_CODE_KEY).apply(
                lambda uri: lifecycle_script_b64(args.lifecycle_on_start_path,
                                                 {**script_values, "__CODE_S3_URI__": uri})),
            tags=args.tags,
            opts=child,
        )
        self.notebook = aws.sagemaker.NotebookInstance(
            f"{name}-notebook",
            name=notebook_name,
            instance_type=config.notebook_instance_type,
            role_arn=self.sagemaker_execution_role.arn,
            platform_identifier=NOTEBOOK_PLATFORM,
            subnet_id=pulumi.Output.from_input(args.private_subnet_ids).apply(lambda ids: ids[0]),
            security_groups=[self.notebook_security_group.id],
            # Always off, dev included: the private subnets reach PyPI and AWS through NAT/endpoints,
            # so there is nothing direct access would add but an unfiltered path out.
            direct_internet_access="Disabled",
            root_access="Disabled",
            kms_key_id=args.kms_key_arn,
            volume_size=config.notebook_volume_gb,
            instance_metadata_service_configuration=aws.sagemaker.NotebookInstanceInstanceMetadataServiceConfigurationArgs(
                minimum_instance_metadata_service_version="2"),
            lifecycle_config_name=self.lifecycle_config.name,
            tags=args.tags,
            # The name is fixed (the idle-stop grant names it), so a replacement must delete first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[sagemaker_policy], delete_before_replace=True),
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

        # ---- outputs (no secret values)
        self.annotation_bucket_name = self.bucket.name
        self.annotation_bucket_arn = self.bucket.arn
        self.ground_truth_role_arn = self.ground_truth_role.arn
        self.sagemaker_execution_role_arn = self.sagemaker_execution_role.arn
        self.prelabel_function_arn = self.prelabel_function.arn
        self.postlabel_function_arn = self.postlabel_function.arn
        self.prelabel_function_name = self.prelabel_function.name
        self.postlabel_function_name = self.postlabel_function.name
        self.template_s3_uri = pulumi.Output.concat("s3://", self.bucket.name, "/", self.template_object.key)
        self.notebook_instance_name = self.notebook.name
        self.viewer_assets_url = self.viewer.base_url
        self.salt_secret_arn = self.salt_secret.arn
        self.dependency_layer_arn = self.layer.arn
        self.register_outputs({
            "viewer_assets_url": self.viewer_assets_url,
            "annotation_bucket_name": self.annotation_bucket_name,
            "annotation_bucket_arn": self.annotation_bucket_arn,
            "ground_truth_role_arn": self.ground_truth_role_arn,
            "sagemaker_execution_role_arn": self.sagemaker_execution_role_arn,
            "prelabel_function_arn": self.prelabel_function_arn,
            "postlabel_function_arn": self.postlabel_function_arn,
            "prelabel_function_name": self.prelabel_function_name,
            "postlabel_function_name": self.postlabel_function_name,
            "template_s3_uri": self.template_s3_uri,
            "notebook_instance_name": self.notebook_instance_name,
        })

    def _lambda(self, name: str, function: str, code: pulumi.Archive, args: LabelingBundleArgs,
                account: pulumi.Output[str], region: pulumi.Output[str], partition: pulumi.Output[str],
                child: pulumi.ResourceOptions) -> aws.lambda_.Function:
        """One GT Lambda with its own role, KMS log group and SageMaker invoke grant."""
        config = args.config
        function_name = sagemaker_lambda_name(name, function)
        # Declared before the function so Lambda does not create it unencrypted and without retention.
        log_group = encrypted_log_group(
            f"{name}-{function}-logs", f"/aws/lambda/{function_name}",
            retention_days=config.log_retention_days, kms_key_arn=args.kms_key_arn, tags=args.tags, opts=child)
        role = aws.iam.Role(
            f"{name}-{function}-role",
            description=f"dicom-annotate GT {function} Lambda",
            assume_role_policy=json.dumps(service_role_trust("lambda.amazonaws.com")),
            tags=args.tags,
            opts=child,
        )
        policy = aws.iam.RolePolicy(
            f"{name}-{function}-policy",
            role=role.id,
            policy=pulumi.Output.all(log_group.arn, self.bucket.arn, args.kms_key_arn, args.orthanc_secret_arn,
                                     self.salt_secret.arn).apply(
                lambda v: json.dumps(lambda_policy(log_group_arn=v[0], bucket_arn=v[1], key_arn=v[2],
                                                   secret_arns=[v[3], v[4]]))),
            opts=pulumi.ResourceOptions(parent=role),
        )
        fn = aws.lambda_.Function(
            f"{name}-{function}",
            name=function_name,
            description=f"SageMaker Ground Truth {function} (dicom-annotate)",
            role=role.arn,
            runtime=LAMBDA_RUNTIME,
            handler=LAMBDA_HANDLER,
            code=code,
            layers=[self.layer.arn],
            architectures=[LAMBDA_ARCHITECTURE],
            memory_size=config.lambda_memory_mb,
            timeout=config.lambda_timeout_s,
            reserved_concurrent_executions=args.reserved_concurrency,
            vpc_config=aws.lambda_.FunctionVpcConfigArgs(
                subnet_ids=args.private_subnet_ids,
                security_group_ids=[args.orthanc_client_security_group_id, self.lambda_security_group.id],
            ),
            environment=aws.lambda_.FunctionEnvironmentArgs(variables={
                # The secret's ARN, never its value: the function reads it from Secrets Manager.
                "ORTHANC_URL": args.orthanc_url,
                "ORTHANC_SECRET_ARN": args.orthanc_secret_arn,
                "STAGING_BUCKET": self.bucket.name,
                "DEIDENTIFY": "true" if config.deidentify else "false",
                # Staged copies are encrypted with the project key; the salt is read from its secret.
                "STAGING_KMS_KEY_ID": args.kms_key_arn,
                "DEIDENTIFY_SALT_SECRET_ARN": self.salt_secret.arn,
                "POWERTOOLS_SERVICE_NAME": f"dicom-annotate-{function}",
            }),
            kms_key_arn=args.kms_key_arn,
            tracing_config=aws.lambda_.FunctionTracingConfigArgs(mode="Active"),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="JSON", log_group=log_group.name),
            tags=args.tags,
            # The role must hold its ENI permissions before Lambda validates the VPC config.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[log_group, policy]),
        )
        aws.lambda_.Permission(
            f"{name}-{function}-sagemaker-invoke",
            action="lambda:InvokeFunction",
            function=fn.name,
            principal="sagemaker.amazonaws.com",
            source_account=account,
            opts=pulumi.ResourceOptions(parent=fn),
        )
        return fn


# ------------------------------------------------------------------------------------------ helpers
def sagemaker_lambda_name(name: str, function: str) -> str:
    """A Lambda name containing ``SageMaker`` (what GT's managed policy expects), at most 64 chars."""
    return f"{name}-SageMaker-{function}"[:64].rstrip("-_")


def _sagemaker_name(text: str) -> str:
    """SageMaker names: letters, digits, single hyphens, at most 63 characters."""
    return text[:63].rstrip("-")


def _https_only_security_group(prefix: str, args: "LabelingBundleArgs", description: str, egress_description: str,
                               opts: pulumi.ResourceOptions) -> aws.ec2.SecurityGroup:
    """No ingress at all; HTTPS out only (NAT or VPC endpoints)."""
    return aws.ec2.SecurityGroup(
        f"{prefix}-sg", vpc_id=args.vpc_id, description=description, ingress=[],
        egress=[_https_egress(egress_description)], tags={**args.tags, "Name": prefix}, opts=opts)


def _https_egress(description: str) -> aws.ec2.SecurityGroupEgressArgs:
    return aws.ec2.SecurityGroupEgressArgs(protocol="tcp", from_port=443, to_port=443,
                                           cidr_blocks=["0.0.0.0/0"], description=description)


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


def service_role_trust(service: str) -> dict[str, Any]:
    """Trust for a service-assumed role, exactly as the service documents it.

    No ``aws:SourceAccount``/``aws:SourceArn`` condition: SageMaker documents those only for
    training, processing, inference and Studio, not for notebook instances or Ground Truth labeling
    jobs (https://docs.aws.amazon.com/sagemaker/latest/dg/security-confused-deputy-prevention.html,
    execution-role trust in https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-roles.html);
    Lambda's execution-role trust has none
    (https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html). A condition
    the service does not send makes AssumeRole fail. What limits use instead: iam:PassRole (only
    this account's principals may hand these roles to the service) and, for invoking the Lambdas,
    the resource policy's source account.
    """
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }]}


def _bucket_statements(bucket_arn: str, object_actions: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {"Sid": "AnnotationBucket", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
         "Resource": bucket_arn},
        {"Sid": "AnnotationObjects", "Effect": "Allow", "Action": list(object_actions),
         "Resource": f"{bucket_arn}/*"},
    ]


def vpc_lambda_statements(log_group_arn: str, secret_arns: Sequence[str]) -> list[dict[str, Any]]:
    """What every Lambda of the project in the VPC needs: ENIs, its own logs, X-Ray, its secrets
    (AWSLambdaVPCAccessExecutionRole, narrowed)."""
    return [
        # ENI actions do not support resource-level scoping; Lambda needs them for VPC attachment.
        {"Sid": "VpcNetworkInterfaces", "Effect": "Allow", "Resource": "*", "Action": [
            "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
            "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"]},
        {"Sid": "OwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"{log_group_arn.removesuffix(':*')}:*"},
        {"Sid": "Tracing", "Effect": "Allow", "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
         "Resource": "*"},
        {"Sid": "Secrets", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
         "Resource": list(secret_arns)},
    ]


def lambda_policy(log_group_arn: str, bucket_arn: str, key_arn: str, secret_arns: Sequence[str]) -> dict[str, Any]:
    """A GT Lambda: VPC networking, its own logs, X-Ray, the Orthanc and de-identification salt
    secrets, the annotation bucket and the key."""
    return {"Version": "2012-10-17", "Statement": [
        *vpc_lambda_statements(log_group_arn, secret_arns),
        *_bucket_statements(bucket_arn, ["s3:GetObject", "s3:PutObject"]),
        {"Sid": "Key", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": key_arn},
    ]}


def ground_truth_policy(bucket_arn: str, key_arn: str, function_arns: Sequence[str], account: str,
                        region: str, partition: str) -> dict[str, Any]:
    """The GT labeling job: the annotation bucket, the key, exactly the two Lambdas, its own logs."""
    log_group = f"arn:{partition}:logs:{region}:{account}:log-group:/aws/sagemaker/LabelingJobs"
    return {"Version": "2012-10-17", "Statement": [
        *_bucket_statements(bucket_arn, ["s3:GetObject", "s3:PutObject"]),
        {"Sid": "Key", "Effect": "Allow", "Resource": key_arn,
         "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]},
        # Explicit grant: GT's managed policy would allow any function whose name contains SageMaker.
        {"Sid": "InvokeLabelingLambdas", "Effect": "Allow", "Action": "lambda:InvokeFunction",
         "Resource": list(function_arns)},
        {"Sid": "LabelingJobLogs", "Effect": "Allow", "Resource": [log_group, f"{log_group}:*"],
         "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                    "logs:DescribeLogStreams"]},
        # GT publishes job metrics; PutMetricData has no resource-level scoping.
        {"Sid": "LabelingJobMetrics", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"},
    ]}


def sagemaker_execution_policy(bucket_arn: str, key_arn: str, role_arn: str, notebook_name: str,
                               account: str, region: str, partition: str) -> dict[str, Any]:
    """Training jobs and the notebook: data, DLC images, logs, jobs of this account, idle stop."""
    arn = f"arn:{partition}:sagemaker:{region}:{account}"
    log_group = f"arn:{partition}:logs:{region}:{account}:log-group:/aws/sagemaker/*"
    return {"Version": "2012-10-17", "Statement": [
        *_bucket_statements(bucket_arn, ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]),
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
