"""ViewerAssetsCdn: the stack's asset location for the DICOM viewer bundle (S3 behind CloudFront).

The GT worker template is limited to 128,000 characters, so it loads the viewer bundle
(``build/viewer/``, ``make viewer``) from here, with Subresource Integrity (docs/architecture.md,
"Contracts"). What this component declares:

- a private :class:`SecureBucket` (public access blocked) encrypted with a key of its own: the
  CloudFront service principal may decrypt with *this* key only, and only for this distribution
  (``AWS:SourceArn``), so the project's data key never trusts CloudFront;
- a CloudFront distribution reading the bucket through Origin Access Control (SigV4, always
  signed), HTTPS only for viewers (HTTP redirects), the managed CachingOptimized policy, and a
  response-headers policy with HSTS, ``nosniff`` and CORS for the GT worker portal origins (the
  template loads the bundle as a ``crossorigin`` module script with an ``integrity`` hash);
- the bucket policy that lets only that distribution read objects (``AWS:SourceArn``);
- one object per built file under a content-versioned prefix ``viewer/<version>/`` (a changed
  bundle gets a new URL, so long cache lifetimes never serve a file whose hash the template no
  longer expects), each with its content type (``.wasm`` → ``application/wasm``).

The worker template's *content* is computed from the distribution's domain name
(``labeling.gt.viewer_assets.render_worker_template``); the object itself lives in the annotation
bucket (:mod:`components.ground_truth`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.storage import SecureBucket, SecureBucketArgs

# AWS managed cache policy "Managed-CachingOptimized" (a fixed, documented id in every account).
CACHING_OPTIMIZED_POLICY_ID = "658327ea-f89d-4fab-a63d-7e88639e58f6"
# Floor for viewer TLS when the distribution serves our own name with our certificate.
VIEWER_TLS_POLICY = "TLSv1.2_2021"
ORIGIN_ID = "viewer-assets"
ASSET_PREFIX = "viewer"
# Files live under a content-versioned prefix: cache them for a year, never revalidate.
IMMUTABLE_CACHE_CONTROL = "public, max-age=31536000, immutable"
HSTS_SECONDS = 63_072_000  # two years


@dataclass
class ViewerAssetsCdnArgs:
    # (relative key, local path, content type) for each built file: labeling.gt.viewer_assets.asset_files().
    assets: Sequence[tuple[str, Path, str]]
    # Origins allowed to read the files cross-origin (the GT worker portal).
    cors_origins: Sequence[str]
    deletion_window_days: int  # of its KMS key: the environment's Retention.key_deletion_days
    # Our own host name and its us-east-1 ACM certificate; None serves *.cloudfront.net.
    domain: Optional[str] = None
    certificate_arn: Optional[str] = None
    tags: dict[str, str] = field(default_factory=dict)


class ViewerAssetsCdn(pulumi.ComponentResource):
    """Private bucket + CloudFront (OAC) + the viewer files; exposes ``base_url``."""

    def __init__(self, name: str, args: ViewerAssetsCdnArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("dicom-annotate:viewer_cdn:ViewerAssetsCdn", name, None, opts)
        if not args.assets:
            raise ValueError(f"{name}: no viewer files to publish (run `make viewer`)")
        self._child = pulumi.ResourceOptions(parent=self)
        self._identity = aws.get_caller_identity_output()
        self._partition = aws.get_partition_output().partition
        self.version = assets_version(args.assets)
        self._prefix = prefix = f"{ASSET_PREFIX}/{self.version}"

        self._key_and_bucket(name, args)
        self._distribution(name, args)
        self._grants(name, args)
        self._objects(name, args)

        host = pulumi.Output.from_input(args.domain) if args.domain else self.distribution.domain_name
        self.domain_name = host
        # The directory URL of the bundle (no trailing slash): "<base_url>/viewer.js".
        self.base_url = pulumi.Output.concat("https://", host, f"/{prefix}")
        self.distribution_arn = self.distribution.arn
        self.bucket_name = self.bucket.name
        self.register_outputs({"base_url": self.base_url, "distribution_arn": self.distribution_arn,
                               "bucket_name": self.bucket_name})

    def _key_and_bucket(self, name: str, args: ViewerAssetsCdnArgs) -> None:
        """A key of its own (its policy below trusts CloudFront for this distribution only) and the private bucket."""
        child = self._child
        self.key = aws.kms.Key(
            f"{name}-key",
            description="dicom-annotate viewer assets (public bundle): readable by its CloudFront distribution",
            enable_key_rotation=True,
            deletion_window_in_days=args.deletion_window_days,
            tags=args.tags,
            opts=child)
        aws.kms.Alias(f"{name}-key-alias", name=f"alias/{name}", target_key_id=self.key.key_id,
                      opts=pulumi.ResourceOptions(parent=self.key))

        self.bucket = SecureBucket(
            f"{name}-bucket",
            SecureBucketArgs(kms_key_arn=self.key.arn, noncurrent_expiry_days=30, defer_policy=True,
                             tags={**args.tags, "purpose": "viewer-assets"}),
            opts=child)

    def _distribution(self, name: str, args: ViewerAssetsCdnArgs) -> None:
        """Origin Access Control, the response-headers policy (HSTS, nosniff, CORS) and the distribution."""
        child = self._child
        self.origin_access_control = aws.cloudfront.OriginAccessControl(
            f"{name}-oac",
            name=f"{name}-oac"[:64],
            description="dicom-annotate viewer assets: CloudFront signs every S3 request (SigV4)",
            origin_access_control_origin_type="s3",
            signing_behavior="always",
            signing_protocol="sigv4",
            opts=child)

        cf = aws.cloudfront
        self.headers_policy = cf.ResponseHeadersPolicy(
            f"{name}-headers",
            name=f"{name}-headers"[:128],
            comment="viewer assets: HSTS, nosniff, CORS for the GT worker portal",
            cors_config=cf.ResponseHeadersPolicyCorsConfigArgs(
                access_control_allow_credentials=False,
                access_control_allow_headers=cf.ResponseHeadersPolicyCorsConfigAccessControlAllowHeadersArgs(
                    items=["Content-Type"]),
                access_control_allow_methods=cf.ResponseHeadersPolicyCorsConfigAccessControlAllowMethodsArgs(
                    items=["GET", "HEAD", "OPTIONS"]),
                access_control_allow_origins=cf.ResponseHeadersPolicyCorsConfigAccessControlAllowOriginsArgs(
                    items=list(args.cors_origins)),
                access_control_max_age_sec=3000,
                origin_override=True),
            security_headers_config=cf.ResponseHeadersPolicySecurityHeadersConfigArgs(
                strict_transport_security=cf.ResponseHeadersPolicySecurityHeadersConfigStrictTransportSecurityArgs(
                    access_control_max_age_sec=HSTS_SECONDS, include_subdomains=True, preload=False, override=True),
                content_type_options=cf.ResponseHeadersPolicySecurityHeadersConfigContentTypeOptionsArgs(
                    override=True),
                referrer_policy=cf.ResponseHeadersPolicySecurityHeadersConfigReferrerPolicyArgs(
                    referrer_policy="no-referrer", override=True),
                frame_options=cf.ResponseHeadersPolicySecurityHeadersConfigFrameOptionsArgs(
                    frame_option="DENY", override=True)),
            opts=child)

        if args.certificate_arn:
            certificate = aws.cloudfront.DistributionViewerCertificateArgs(
                acm_certificate_arn=args.certificate_arn, ssl_support_method="sni-only",
                minimum_protocol_version=VIEWER_TLS_POLICY)
        else:
            # *.cloudfront.net: AWS fixes the security policy of its default certificate.
            certificate = aws.cloudfront.DistributionViewerCertificateArgs(cloudfront_default_certificate=True)
        self.distribution = aws.cloudfront.Distribution(
            f"{name}-cdn",
            comment="dicom-annotate viewer bundle for the GT worker template",
            enabled=True,
            is_ipv6_enabled=True,
            http_version="http2and3",
            price_class="PriceClass_100",
            aliases=[args.domain] if args.domain else None,
            origins=[aws.cloudfront.DistributionOriginArgs(
                origin_id=ORIGIN_ID,
                domain_name=self.bucket.bucket.bucket_regional_domain_name,
                origin_access_control_id=self.origin_access_control.id)],
            default_cache_behavior=aws.cloudfront.DistributionDefaultCacheBehaviorArgs(
                target_origin_id=ORIGIN_ID,
                viewer_protocol_policy="redirect-to-https",
                allowed_methods=["GET", "HEAD", "OPTIONS"],
                cached_methods=["GET", "HEAD"],
                cache_policy_id=CACHING_OPTIMIZED_POLICY_ID,
                response_headers_policy_id=self.headers_policy.id,
                compress=True),
            restrictions=aws.cloudfront.DistributionRestrictionsArgs(
                geo_restriction=aws.cloudfront.DistributionRestrictionsGeoRestrictionArgs(restriction_type="none")),
            viewer_certificate=certificate,
            tags=args.tags,
            opts=child)

    def _grants(self, name: str, args: ViewerAssetsCdnArgs) -> None:
        """Only this distribution may read objects, and decrypt them."""
        identity, partition = self._identity, self._partition
        distribution_arn = self.distribution.arn
        self.bucket.attach_policy(pulumi.Output.all(self.bucket.arn, distribution_arn).apply(
            lambda v: [cloudfront_read_statement(v[0], v[1])]))
        self.key_policy = aws.kms.KeyPolicy(
            f"{name}-key-policy",
            key_id=self.key.key_id,
            policy=pulumi.Output.all(identity.account_id, partition, distribution_arn).apply(
                lambda v: json.dumps(viewer_key_policy(account_id=v[0], partition=v[1], distribution_arn=v[2]))),
            opts=pulumi.ResourceOptions(parent=self.key))

    def _objects(self, name: str, args: ViewerAssetsCdnArgs) -> None:
        """The files, each under the versioned prefix, encrypted with the key above."""
        prefix = self._prefix
        self.objects = [aws.s3.BucketObjectv2(
            f"{name}-{_resource_suffix(key)}",
            bucket=self.bucket.id,
            key=f"{prefix}/{key}",
            source=pulumi.FileAsset(str(path)),
            content_type=content_type,
            cache_control=IMMUTABLE_CACHE_CONTROL,
            server_side_encryption="aws:kms",
            kms_key_id=self.key.arn,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.key_policy]))
            for key, path, content_type in args.assets]

# ---------------------------------------------------------------------- documents (pure functions)
def assets_version(assets: Sequence[tuple[str, Path, str]]) -> str:
    """A short content hash of every file and its key: the bundle's URL changes with its bytes."""
    digest = hashlib.sha256()
    for key, path, content_type in sorted(assets, key=lambda a: a[0]):
        digest.update(f"{key}\0{content_type}\0".encode())
        digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return digest.hexdigest()[:16]


def _resource_suffix(key: str) -> str:
    """A Pulumi resource name suffix for an object key (stable, readable, no slashes)."""
    return "asset-" + "".join(c if c.isalnum() or c in "-_." else "-" for c in key)


def cloudfront_read_statement(bucket_arn: str, distribution_arn: str) -> dict[str, Any]:
    """OAC: the CloudFront service principal may read objects, for this distribution only."""
    return {
        "Sid": "AllowCloudFrontDistributionRead",
        "Effect": "Allow",
        "Principal": {"Service": "cloudfront.amazonaws.com"},
        "Action": "s3:GetObject",
        "Resource": f"{bucket_arn}/*",
        "Condition": {"StringEquals": {"AWS:SourceArn": distribution_arn}},
    }


def viewer_key_policy(*, account_id: str, partition: str, distribution_arn: str) -> dict[str, Any]:
    """Key policy: the account administers (AWS default); CloudFront decrypts for one distribution."""
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "AccountAdministers",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
        "Action": "kms:*",
        "Resource": "*",
    }, {
        "Sid": "AllowCloudFrontDistributionDecrypt",
        "Effect": "Allow",
        "Principal": {"Service": "cloudfront.amazonaws.com"},
        "Action": "kms:Decrypt",
        "Resource": "*",
        "Condition": {"StringEquals": {"AWS:SourceArn": distribution_arn}},
    }]}
