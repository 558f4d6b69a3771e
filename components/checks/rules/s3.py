"""S3: each bucket and the configuration resources that refer to it, and bucket policies.

Rules read resources through :mod:`components.checks.graph`; :data:`RULES` lists this module's.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from components.checks.graph import (
    ALB_LOG_BUCKET_TAG, BUCKETS, BUCKET_POLICIES, CORS_CONFIGS, Context, LOAD_BALANCERS,
    OWNERSHIP_CONTROLS, PUBLIC_ACCESS_BLOCKS, Rule, SSE_CONFIGS, VERSIONINGS, as_list,
    falsy, get, parse_json, statements, truthy,
)


def _bucket_refs(bucket: Any, ctx: Context, types: Sequence[str]) -> list[Any]:
    return ctx.referrers(bucket, types, "bucket")


def is_alb_log_bucket(bucket: Any, ctx: Context) -> bool:
    """True for a bucket an ALB delivers access logs to (or one tagged as such)."""
    tags = get(bucket, "tags", allow_unknown=True) or {}
    if isinstance(tags, Mapping) and tags.get(ALB_LOG_BUCKET_TAG[0]) == ALB_LOG_BUCKET_TAG[1]:
        return True
    return bool(ctx.referrers(bucket, LOAD_BALANCERS, "accessLogs"))


def _find_key(node: Any, key: str) -> list[Any]:
    """All values under ``key`` anywhere in a nested input (inline legacy bucket blocks)."""
    found = []
    if isinstance(node, Mapping):
        for k, v in node.items():
            if k == key:
                found.append(v)
            found.extend(_find_key(v, key))
    elif isinstance(node, (list, tuple)):
        for item in node:
            found.extend(_find_key(item, key))
    return found


def check_s3_sse_kms(bucket: Any, ctx: Context) -> list[str]:
    """FSBP S3.17 (S3 buckets should be encrypted at rest with AWS KMS keys).

    The one exception is a bucket that receives ALB access logs: ELB log delivery supports only
    SSE-S3 (AES256), so such a bucket must use AES256 and nothing else.
    """
    algorithms: list[tuple[Any, Any]] = []  # (sseAlgorithm, kmsMasterKeyId)
    for config in _bucket_refs(bucket, ctx, SSE_CONFIGS):
        for rule in as_list(get(config, "rules")):
            default = rule.get("applyServerSideEncryptionByDefault") if isinstance(rule, Mapping) else None
            if isinstance(default, Mapping):
                algorithms.append((default.get("sseAlgorithm"), default.get("kmsMasterKeyId")))
    for default in _find_key(get(bucket, "serverSideEncryptionConfiguration"),
                             "applyServerSideEncryptionByDefault"):
        for item in as_list(default):
            if isinstance(item, Mapping):
                algorithms.append((item.get("sseAlgorithm"), item.get("kmsMasterKeyId")))
    if not algorithms:
        return [f"{bucket.name}: no server-side encryption configuration refers to this bucket"]
    if is_alb_log_bucket(bucket, ctx):
        bad = [a for a, _ in algorithms if a != "AES256"]
        return [f"{bucket.name}: ALB access-log bucket must use AES256 (ELB log delivery supports "
                f"SSE-S3 only), found {bad}"] if bad else []
    problems = []
    for algorithm, key_id in algorithms:
        if algorithm not in ("aws:kms", "aws:kms:dsse"):
            problems.append(f"{bucket.name}: sseAlgorithm is {algorithm!r}, needs aws:kms")
        elif key_id in (None, ""):
            problems.append(f"{bucket.name}: SSE-KMS without kmsMasterKeyId uses the AWS-managed key; "
                            f"name the project's customer-managed key")
    return problems


def check_s3_versioning(bucket: Any, ctx: Context) -> list[str]:
    """AWSGuard s3-bucket-versioning-enabled (FSBP S3.14): versioning Enabled."""
    for config in _bucket_refs(bucket, ctx, VERSIONINGS):
        if get(config, "versioningConfiguration", "status") == "Enabled":
            return []
    if truthy(get(bucket, "versioning", "enabled")):
        return []
    return [f"{bucket.name}: no BucketVersioning with status Enabled refers to this bucket"]


def check_s3_public_access_block(bucket: Any, ctx: Context) -> list[str]:
    """FSBP S3.8: S3 general purpose buckets should block public access (all four settings)."""
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    blocks = _bucket_refs(bucket, ctx, PUBLIC_ACCESS_BLOCKS)
    if not blocks:
        return [f"{bucket.name}: no BucketPublicAccessBlock refers to this bucket"]
    for block in blocks:
        missing = [f for f in flags if not truthy(get(block, f))]
        if not missing:
            return []
    return [f"{bucket.name}: public access block does not set {', '.join(missing)}"]


def _denies_insecure_transport(statement: Mapping[str, Any]) -> bool:
    if statement.get("Effect") != "Deny":
        return False
    principal = statement.get("Principal")
    if principal != "*" and not (isinstance(principal, Mapping) and "*" in as_list(principal.get("AWS"))):
        return False
    if not {"s3:*", "*"} & set(as_list(statement.get("Action"))):
        return False
    resources = [str(x) for x in as_list(statement.get("Resource"))]
    if not (any(x.endswith("/*") or x == "*" for x in resources)
            and any(not x.endswith("/*") for x in resources)):
        return False  # must cover the bucket and its objects
    condition = statement.get("Condition") or {}
    secure = (condition.get("Bool") or {}).get("aws:SecureTransport") if isinstance(condition, Mapping) else None
    return falsy(secure) or as_list(secure) in (["false"], [False])


def check_s3_ssl_requests_only(bucket: Any, ctx: Context) -> list[str]:
    """FSBP S3.5: S3 buckets should require requests to use SSL (Deny aws:SecureTransport=false)."""
    policies = _bucket_refs(bucket, ctx, BUCKET_POLICIES)
    if not policies:
        return [f"{bucket.name}: no bucket policy refers to this bucket"]
    for policy in policies:
        document = parse_json(policy, get(policy, "policy", allow_unknown=True), f"{policy.name}.policy")
        if any(_denies_insecure_transport(s) for s in statements(document)):
            return []
    return [f"{bucket.name}: bucket policy has no Deny of s3:* on the bucket and its objects when "
            f"aws:SecureTransport is false"]


def check_s3_ownership_enforced(bucket: Any, ctx: Context) -> list[str]:
    """FSBP S3.12: ACLs should not be used (object ownership BucketOwnerEnforced)."""
    for control in _bucket_refs(bucket, ctx, OWNERSHIP_CONTROLS):
        if get(control, "rule", "objectOwnership") == "BucketOwnerEnforced":
            return []
    return [f"{bucket.name}: no BucketOwnershipControls with BucketOwnerEnforced refers to this bucket"]


def check_s3_cors_origins(r: Any, ctx: Context) -> list[str]:
    """Project floor: CORS names its origins (https only, never ``*``) — GT worker portal, viewer."""
    problems = []
    for rule in as_list(get(r, "corsRules")):
        for origin in as_list(rule.get("allowedOrigins") if isinstance(rule, Mapping) else None):
            if origin == "*" or not str(origin).startswith("https://"):
                problems.append(f"{r.name}: CORS allows origin {origin!r}; name https:// origins")
    return problems

def check_bucket_policy_not_public(r: Any, ctx: Context) -> list[str]:
    """FSBP S3.2/S3.3 (no public read/write) as policy text: no Allow to Principal ``*``, and an Allow to
    the CloudFront service principal names its distribution (AWS:SourceArn), as OAC requires."""
    document = parse_json(r, get(r, "policy", allow_unknown=True), f"{r.name}.policy")
    problems = []
    for i, statement in enumerate(statements(document)):
        if statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal")
        values = ([v for vals in principal.values() for v in as_list(vals)] if isinstance(principal, Mapping)
                  else as_list(principal))
        if "*" in values:
            problems.append(f"{r.name}: statement {statement.get('Sid', i)} allows Principal * (public bucket)")
        if "cloudfront.amazonaws.com" in values:
            condition = statement.get("Condition") or {}
            source = ((condition.get("StringEquals") or {}).get("AWS:SourceArn")
                      if isinstance(condition, Mapping) else None)
            if not source or any("*" in str(s) for s in as_list(source)):
                problems.append(f"{r.name}: statement {statement.get('Sid', i)} lets CloudFront read without "
                                f"naming the distribution (StringEquals AWS:SourceArn)")
    return problems


RULES: tuple[Rule, ...] = (
    Rule("s3-bucket-sse-kms", "S3 buckets encrypted with SSE-KMS (ALB log buckets: SSE-S3)",
         BUCKETS, check_s3_sse_kms, "FSBP S3.17", scope="stack"),
    Rule("s3-bucket-versioning-enabled", "S3 bucket versioning enabled",
         BUCKETS, check_s3_versioning, "FSBP S3.14", scope="stack", severity="medium"),
    Rule("s3-bucket-public-access-block", "S3 bucket blocks all public access",
         BUCKETS, check_s3_public_access_block, "FSBP S3.8", scope="stack", severity="critical"),
    Rule("s3-bucket-ssl-requests-only", "S3 bucket policy denies non-TLS requests",
         BUCKETS, check_s3_ssl_requests_only, "FSBP S3.5", scope="stack"),
    Rule("s3-bucket-ownership-enforced", "S3 bucket ACLs disabled (BucketOwnerEnforced)",
         BUCKETS, check_s3_ownership_enforced, "FSBP S3.12", scope="stack", severity="medium"),
    Rule("s3-bucket-cors-restricted-origins", "S3 CORS names https origins, never *",
         CORS_CONFIGS, check_s3_cors_origins, "docs/architecture.md security posture", severity="medium"),
    Rule("s3-bucket-policy-not-public", "Bucket policies allow no public principal; CloudFront only per distribution",
         BUCKET_POLICIES, check_bucket_policy_not_public, "FSBP S3.2 / S3.3", severity="critical"),
)
