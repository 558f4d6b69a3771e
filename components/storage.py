"""Encryption key, bucket and log-group helpers that carry the project's storage security floor.

Every bucket of the project is a :class:`SecureBucket`: SSE-KMS with a bucket key, versioning,
public access blocked, bucket-owner-enforced ownership, and a policy that denies non-TLS requests
(docs/architecture.md, "Security posture"). Callers add what is specific to them (lifecycle, CORS,
extra policy statements) through :class:`SecureBucketArgs`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import pulumi
import pulumi_aws as aws


@dataclass
class KmsKeyArgs:
    description: str
    deletion_window_days: int  # the environment's Retention.key_deletion_days (components/config.py)
    # CloudWatch Logs of this account and region may encrypt its log groups with the key.
    cloudwatch_logs: bool = False
    tags: dict[str, str] = field(default_factory=dict)


class KmsKey(pulumi.ComponentResource):
    """A customer-managed KMS key with yearly rotation and an alias."""

    def __init__(self, name: str, args: KmsKeyArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("dicom-annotate:storage:KmsKey", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        identity = aws.get_caller_identity_output()
        region = aws.get_region_output()
        partition = aws.get_partition_output().partition
        policy = pulumi.Output.all(identity.account_id, region.region, partition).apply(
            lambda vals: json.dumps(_key_policy(vals[0], vals[1], vals[2], args.cloudwatch_logs)))
        self.key = aws.kms.Key(
            f"{name}-key",
            description=args.description,
            enable_key_rotation=True,
            deletion_window_in_days=args.deletion_window_days,
            policy=policy,
            tags=args.tags,
            opts=child,
        )
        self.alias = aws.kms.Alias(f"{name}-alias", name=f"alias/{name}", target_key_id=self.key.key_id,
                                   opts=child)
        self.arn = self.key.arn
        self.key_id = self.key.key_id
        self.register_outputs({"arn": self.arn})


def _key_policy(account_id: str, region: str, partition: str, cloudwatch_logs: bool) -> dict[str, Any]:
    statements: list[dict[str, Any]] = [{
        # Key administration stays with the account's IAM policies (AWS default key policy).
        "Sid": "AccountAdministers",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
        "Action": "kms:*",
        "Resource": "*",
    }]
    if cloudwatch_logs:
        # As AWS documents for CloudWatch Logs: the condition is the log group ARN Logs puts in the
        # encryption context (Logs does not send aws:SourceAccount to KMS), limited to this
        # account and region. https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html
        statements.append({
            "Sid": "CloudWatchLogsEncrypt",
            "Effect": "Allow",
            "Principal": {"Service": f"logs.{region}.amazonaws.com"},
            "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                       "kms:Describe*"],
            "Resource": "*",
            "Condition": {"ArnLike": {
                "kms:EncryptionContext:aws:logs:arn": f"arn:{partition}:logs:{region}:{account_id}:log-group:*"}},
        })
    return {"Version": "2012-10-17", "Statement": statements}


@dataclass
class SecureBucketArgs:
    kms_key_arn: Optional[pulumi.Input[str]]
    """None only for ALB access-log buckets: ELB log delivery supports SSE-S3 only."""
    intelligent_tiering_after_days: Optional[int] = None
    noncurrent_expiry_days: int = 90
    expire_after_days: Optional[int] = None
    cors_rules: Sequence[aws.s3.BucketCorsConfigurationCorsRuleArgs] = ()
    extra_policy_statements: Optional[pulumi.Input[Sequence[dict]]] = None
    # Statements that name the bucket itself (e.g. a log-delivery grant on "<arn>/prefix/*"):
    # called with the bucket's ARN Output, returns the statements to append.
    own_policy_statements: Optional[Callable[[pulumi.Output[str]], pulumi.Input[Sequence[dict]]]] = None
    force_destroy: bool = False
    # True when a statement must name a resource that is created after the bucket (a CloudFront
    # distribution reading it through OAC): the caller then calls ``attach_policy`` exactly once.
    defer_policy: bool = False
    tags: dict[str, str] = field(default_factory=dict)


class SecureBucket(pulumi.ComponentResource):
    """An S3 bucket with the project's security floor and optional lifecycle/CORS."""

    def __init__(self, name: str, args: SecureBucketArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("dicom-annotate:storage:SecureBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bucket = aws.s3.Bucket(f"{name}-bucket", force_destroy=args.force_destroy, tags=args.tags,
                                    opts=child)
        bucket_child = pulumi.ResourceOptions(parent=self.bucket)
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=self.bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=bucket_child)
        self.public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block", bucket=self.bucket.id, block_public_acls=True,
            block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True,
            opts=bucket_child)
        if args.kms_key_arn is not None:
            default = aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                sse_algorithm="aws:kms", kms_master_key_id=args.kms_key_arn)
        else:
            default = aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                sse_algorithm="AES256")
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-sse", bucket=self.bucket.id,
            rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=default,
                bucket_key_enabled=args.kms_key_arn is not None)],
            opts=bucket_child)
        aws.s3.BucketVersioning(
            f"{name}-versioning", bucket=self.bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=bucket_child)
        rules = [aws.s3.BucketLifecycleConfigurationRuleArgs(
            id="noncurrent-expiry", status="Enabled",
            filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
            noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                noncurrent_days=args.noncurrent_expiry_days),
            abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                days_after_initiation=7))]
        if args.intelligent_tiering_after_days is not None:
            rules.append(aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="intelligent-tiering", status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                transitions=[aws.s3.BucketLifecycleConfigurationRuleTransitionArgs(
                    days=args.intelligent_tiering_after_days, storage_class="INTELLIGENT_TIERING")]))
        if args.expire_after_days is not None:
            rules.append(aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="expire", status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=args.expire_after_days)))
        aws.s3.BucketLifecycleConfiguration(f"{name}-lifecycle", bucket=self.bucket.id, rules=rules,
                                            opts=bucket_child)
        if args.cors_rules:
            aws.s3.BucketCorsConfiguration(f"{name}-cors", bucket=self.bucket.id,
                                           cors_rules=list(args.cors_rules), opts=bucket_child)
        self._name = name
        self._args = args
        self.policy: Optional[aws.s3.BucketPolicy] = None
        if not args.defer_policy:
            self.attach_policy()
        self.name = self.bucket.bucket
        self.arn = self.bucket.arn
        self.id = self.bucket.id
        self.register_outputs({"name": self.name, "arn": self.arn})

    def attach_policy(self, later_statements: Optional[pulumi.Input[Sequence[dict]]] = None) -> aws.s3.BucketPolicy:
        """The bucket policy: TLS-only, the args' statements, and ``later_statements``."""
        if self.policy is not None:
            raise RuntimeError(f"{self._name}: the bucket policy is already attached")
        args = self._args
        extra = pulumi.Output.from_input(args.extra_policy_statements or [])
        own = pulumi.Output.from_input(
            args.own_policy_statements(self.bucket.arn) if args.own_policy_statements else [])
        later = pulumi.Output.from_input(later_statements or [])
        policy = pulumi.Output.all(self.bucket.arn, extra, own, later).apply(
            lambda vals: json.dumps(bucket_policy(vals[0], list(vals[1]) + list(vals[2]) + list(vals[3]))))
        self.policy = aws.s3.BucketPolicy(
            f"{self._name}-policy", bucket=self.bucket.id, policy=policy,
            # A public-access block must exist first or S3 may reject a policy update race.
            opts=pulumi.ResourceOptions(parent=self.bucket, depends_on=[self.public_access_block]))
        return self.policy


def bucket_policy(bucket_arn: str, extra_statements: list[dict]) -> dict[str, Any]:
    """Bucket policy: deny any request not made over TLS, plus the caller's statements."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, f"{bucket_arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }, *extra_statements],
    }


def encrypted_log_group(resource_name: str, log_group_name: pulumi.Input[str], *, retention_days: int,
                        kms_key_arn: pulumi.Input[str], tags: dict[str, str],
                        opts: pulumi.ResourceOptions) -> aws.cloudwatch.LogGroup:
    """A CloudWatch log group with the floor every log group of the project has: KMS and retention.

    Declared by us before the service that writes to it, so the service does not create it
    unencrypted and never expiring.
    """
    return aws.cloudwatch.LogGroup(resource_name, name=log_group_name, retention_in_days=retention_days,
                                   kms_key_id=kms_key_arn, tags=tags, opts=opts)


def bucket_statements(bucket_arn: str, object_actions: Sequence[str]) -> list[dict[str, Any]]:
    """IAM statements for a role that works in one bucket: list it, and these object actions."""
    return [
        {"Sid": "AnnotationBucket", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
         "Resource": bucket_arn},
        {"Sid": "AnnotationObjects", "Effect": "Allow", "Action": list(object_actions),
         "Resource": f"{bucket_arn}/*"},
    ]
