"""GroundTruth: the SageMaker Ground Truth backend of a labeling job, next to Orthanc.

- the annotation bucket (project bucket floor, plus CORS for the GT worker portal): manifests,
  staged images, the worker template, answers, output manifests; the training notebook and the
  portal's exports use it too;
- the de-identification salt (Secrets Manager), read by the pre-label Lambda and the portal;
- the pre- and post-annotation Lambdas (private subnets, reach Orthanc through its client security
  group), each with its own role, KMS-encrypted log group and an invoke grant for SageMaker, and
  their dependency layer;
- the GT labeling execution role (explicit grants: GT's managed policy is name-based and too wide);
- the worker task template in the bucket, rendered with the URL of the viewer asset location
  (:class:`components.viewer_cdn.ViewerAssetsCdn`, a child: S3 behind CloudFront with OAC) and its
  SRI hash.

The component only declares resources; the contracts the Lambdas implement live in
``labeling/gt/contracts.py``. Until the split it was the ``LabelingBundle`` (with the training
notebook, now :mod:`components.notebook`): the component keeps that name and an alias to that type,
so its children keep their URNs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.config import Retention
from components.iam import service_role_trust, vpc_lambda_statements
from components.network import https_only_security_group
from components.orthanc import OrthancAccess
from components.packaging import LAMBDA_RUNTIME
from components.storage import SecureBucket, SecureBucketArgs, bucket_statements, encrypted_log_group
from components.viewer_cdn import ViewerAssetsCdn, ViewerAssetsCdnArgs
from labeling.gt import names as gt_names
from labeling.gt import viewer_assets

TYPE = "dicom-annotate:ground_truth:GroundTruth"
# What it was before the split (components/moved.py): the alias its children's URNs follow.
FORMER_TYPE = "dicom-annotate:labeling:LabelingBundle"
TEMPLATE_KEY = "templates/worker_template.liquid.html"
LAMBDA_HANDLER = "handler.lambda_handler"
LAMBDA_ARCHITECTURE = "x86_64"  # the dependency layer is built from manylinux2014/manylinux_2_28 x86_64 wheels
LAMBDA_ROLE_NAMES = ("prelabel", "postlabel")


@dataclass
class GroundTruthArgs:
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[list]
    orthanc: OrthancAccess
    kms_key_arn: pulumi.Input[str]
    prelabel_code: pulumi.Archive
    postlabel_code: pulumi.Archive
    dependency_layer: pulumi.Archive
    # GT worker portal origins: CORS on the bucket and on the viewer's CDN.
    worker_origins: Sequence[str]
    prod: bool
    log_retention_days: int
    lambda_memory_mb: int
    lambda_timeout_s: int
    deidentify: bool
    # Your own name for the viewer's CDN and its us-east-1 certificate; None: *.cloudfront.net.
    viewer_assets_domain: Optional[str] = None
    viewer_assets_certificate_arn: Optional[str] = None
    tags: dict[str, str] = field(default_factory=dict)
    # None leaves the functions on the account's unreserved pool.
    reserved_concurrency: Optional[int] = None


class GroundTruth(pulumi.ComponentResource):
    """Annotation bucket, salt, GT Lambdas and role, viewer CDN and worker template."""

    def __init__(self, name: str, args: GroundTruthArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE, name, None, pulumi.ResourceOptions.merge(
            pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=FORMER_TYPE)]), opts))
        self._child = pulumi.ResourceOptions(parent=self)
        self._account = aws.get_caller_identity_output().account_id
        self._region = aws.get_region_output().region
        self._partition = aws.get_partition_output().partition

        self._bucket_and_salt(name, args)
        self._lambdas(name, args)
        self._ground_truth_role(name, args)
        self._viewer_and_template(name, args)

        # ---- outputs (no secret values)
        self.annotation_bucket_name = self.bucket.name
        self.annotation_bucket_arn = self.bucket.arn
        self.annotation_bucket_id = self.bucket.id
        self.ground_truth_role_arn = self.ground_truth_role.arn
        self.prelabel_function_arn = self.prelabel_function.arn
        self.postlabel_function_arn = self.postlabel_function.arn
        self.prelabel_function_name = self.prelabel_function.name
        self.postlabel_function_name = self.postlabel_function.name
        self.template_s3_uri = pulumi.Output.concat("s3://", self.bucket.name, "/", self.template_object.key)
        self.viewer_assets_url = self.viewer.base_url
        self.salt_secret_arn = self.salt_secret.arn
        self.dependency_layer_arn = self.layer.arn
        self.register_outputs({
            "viewer_assets_url": self.viewer_assets_url,
            "annotation_bucket_name": self.annotation_bucket_name,
            "annotation_bucket_arn": self.annotation_bucket_arn,
            "ground_truth_role_arn": self.ground_truth_role_arn,
            "prelabel_function_arn": self.prelabel_function_arn,
            "postlabel_function_arn": self.postlabel_function_arn,
            "prelabel_function_name": self.prelabel_function_name,
            "postlabel_function_name": self.postlabel_function_name,
            "template_s3_uri": self.template_s3_uri,
        })

    def _bucket_and_salt(self, name: str, args: GroundTruthArgs) -> None:
        """The annotation bucket (CORS for the GT worker portal) and the de-identification salt."""
        child = self._child
        self.bucket = SecureBucket(
            f"{name}-annotations",
            SecureBucketArgs(
                kms_key_arn=args.kms_key_arn,
                # GT's worker portal fetches images and the template from the browser (GT docs,
                # "CORS requirement"): it must be able to read Access-Control-Allow-Origin.
                cors_rules=[aws.s3.BucketCorsConfigurationCorsRuleArgs(
                    allowed_methods=["GET", "HEAD"],
                    allowed_origins=list(args.worker_origins),
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
            kms_key_id=args.kms_key_arn, recovery_window_in_days=Retention.of(args.prod).secret_recovery_days,
            tags=args.tags, opts=child)
        aws.secretsmanager.SecretVersion(f"{name}-deid-salt-value", secret_id=self.salt_secret.id,
                                         secret_string=salt.result,
                                         opts=pulumi.ResourceOptions(parent=self.salt_secret))

    def _lambdas(self, name: str, args: GroundTruthArgs) -> None:
        """Dependency layer, egress-only SG, one role + log group + function per GT Lambda."""
        child = self._child
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
        self.lambda_security_group = https_only_security_group(
            f"{name}-lambda", vpc_id=args.vpc_id,
            description="GT pre/post-label Lambdas: no ingress; HTTPS out to AWS APIs",
            egress_description="AWS APIs (S3, Secrets Manager, X-Ray) via NAT or VPC endpoints", tags=args.tags,
            opts=child)
        functions = {}
        for function, code in (("prelabel", args.prelabel_code), ("postlabel", args.postlabel_code)):
            functions[function] = self._lambda(name, function, code, args)
        self.prelabel_function, self.postlabel_function = functions["prelabel"], functions["postlabel"]

    def _ground_truth_role(self, name: str, args: GroundTruthArgs) -> None:
        """GT labeling execution role: explicit grants on this component's resources only."""
        child, account, region, partition = self._child, self._account, self._region, self._partition
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

    def _viewer_and_template(self, name: str, args: GroundTruthArgs) -> None:
        """Viewer asset location; the worker template (GT reads it from S3 by URI) loads the bundle
        from it, with SRI."""
        child = self._child
        # asset_files() raises ViewerAssetsError ("run `make viewer`") when build/viewer is missing.
        self.viewer = ViewerAssetsCdn(
            f"{name}-viewer",
            ViewerAssetsCdnArgs(
                assets=viewer_assets.asset_files(),
                cors_origins=list(args.worker_origins),
                domain=args.viewer_assets_domain,
                certificate_arn=args.viewer_assets_certificate_arn,
                deletion_window_days=Retention.of(args.prod).key_deletion_days,
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

    def _lambda(self, name: str, function: str, code: pulumi.Archive, args: GroundTruthArgs) -> aws.lambda_.Function:
        """One GT Lambda with its own role, KMS log group and SageMaker invoke grant."""
        child = self._child
        function_name = sagemaker_lambda_name(name, function)
        # Declared before the function so Lambda does not create it unencrypted and without retention.
        log_group = encrypted_log_group(
            f"{name}-{function}-logs", f"/aws/lambda/{function_name}",
            retention_days=args.log_retention_days, kms_key_arn=args.kms_key_arn, tags=args.tags, opts=child)
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
            policy=pulumi.Output.all(log_group.arn, self.bucket.arn, args.kms_key_arn, args.orthanc.secret_arn,
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
            memory_size=args.lambda_memory_mb,
            timeout=args.lambda_timeout_s,
            reserved_concurrent_executions=args.reserved_concurrency,
            vpc_config=aws.lambda_.FunctionVpcConfigArgs(
                subnet_ids=args.private_subnet_ids,
                security_group_ids=[args.orthanc.client_security_group_id, self.lambda_security_group.id],
            ),
            environment=aws.lambda_.FunctionEnvironmentArgs(variables={
                # The secret's ARN, never its value: the function reads it from Secrets Manager.
                gt_names.ORTHANC_URL: args.orthanc.url,
                gt_names.ORTHANC_SECRET_ARN: args.orthanc.secret_arn,
                gt_names.STAGING_BUCKET: self.bucket.name,
                gt_names.DEIDENTIFY: "true" if args.deidentify else "false",
                # Staged copies are encrypted with the project key; the salt is read from its secret.
                gt_names.STAGING_KMS_KEY_ID: args.kms_key_arn,
                gt_names.DEIDENTIFY_SALT_SECRET_ARN: self.salt_secret.arn,
                gt_names.POWERTOOLS_SERVICE_NAME: f"dicom-annotate-{function}",
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
            source_account=self._account,
            opts=pulumi.ResourceOptions(parent=fn),
        )
        return fn


# ---------------------------------------------------------------------- documents (pure functions)
def sagemaker_lambda_name(name: str, function: str) -> str:
    """A Lambda name containing ``SageMaker`` (what GT's managed policy expects), at most 64 chars."""
    return f"{name}-SageMaker-{function}"[:64].rstrip("-_")


def lambda_policy(log_group_arn: str, bucket_arn: str, key_arn: str, secret_arns: Sequence[str]) -> dict[str, Any]:
    """A GT Lambda: VPC networking, its own logs, X-Ray, the Orthanc and de-identification salt
    secrets, the annotation bucket and the key."""
    return {"Version": "2012-10-17", "Statement": [
        *vpc_lambda_statements(log_group_arn, secret_arns),
        *bucket_statements(bucket_arn, ["s3:GetObject", "s3:PutObject"]),
        {"Sid": "Key", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": key_arn},
    ]}


def ground_truth_policy(bucket_arn: str, key_arn: str, function_arns: Sequence[str], account: str,
                        region: str, partition: str) -> dict[str, Any]:
    """The GT labeling job: the annotation bucket, the key, exactly the two Lambdas, its own logs."""
    log_group = f"arn:{partition}:logs:{region}:{account}:log-group:/aws/sagemaker/LabelingJobs"
    return {"Version": "2012-10-17", "Statement": [
        *bucket_statements(bucket_arn, ["s3:GetObject", "s3:PutObject"]),
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


