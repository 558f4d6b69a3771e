"""KMS keys, CloudWatch log groups and Secrets Manager secrets.

Rules read resources through :mod:`components.checks.graph`; :data:`RULES` lists this module's.
"""

from __future__ import annotations

from typing import Any

from components.checks.graph import (
    Context, KMS_KEYS, LOG_GROUPS, Rule, SECRETS, as_int,
    get, present, truthy,
)


def check_kms_rotation(r: Any, ctx: Context) -> list[str]:
    """FSBP KMS.4: AWS KMS key rotation should be enabled (symmetric keys)."""
    spec = get(r, "customerMasterKeySpec") or get(r, "keySpec") or "SYMMETRIC_DEFAULT"
    if spec == "SYMMETRIC_DEFAULT" and not truthy(get(r, "enableKeyRotation")):
        return [f"{r.name}: enableKeyRotation is not true"]
    return []


# Log retention floors per environment: logs may hold request paths with study identifiers; never
# keep them forever (cost, exposure), keep prod a year for audit (FSBP CloudWatch.16 uses 365).
LOG_RETENTION_MIN_DAYS = {"dev": 7, "prod": 365}


def check_log_group_retention(r: Any, ctx: Context) -> list[str]:
    """FSBP CloudWatch.16: CloudWatch log groups should be retained for a specified period."""
    days = as_int(get(r, "retentionInDays"))
    floor = LOG_RETENTION_MIN_DAYS.get(ctx.environment, 7)
    if days is None or days <= 0:
        return [f"{r.name}: retentionInDays is {days!r} (never expires); set a retention"]
    if days < floor:
        return [f"{r.name}: retentionInDays {days} is below the {ctx.environment} floor of {floor}"]
    return []


def check_log_group_encrypted(r: Any, ctx: Context) -> list[str]:
    """AWSGuard cloudwatch-log-group-encrypted: log groups encrypted with a customer-managed KMS key."""
    if not present(r, "kmsKeyId"):
        return [f"{r.name}: kmsKeyId is not set"]
    return []


def check_secret_kms(r: Any, ctx: Context) -> list[str]:
    """AWSGuard secretsmanager-secret-encrypted-with-cmk: secrets use the project's KMS key."""
    if not present(r, "kmsKeyId"):
        return [f"{r.name}: kmsKeyId is not set (uses the AWS-managed key)"]
    return []


RULES: tuple[Rule, ...] = (
    Rule("kms-key-rotation-enabled", "KMS keys rotate yearly",
         KMS_KEYS, check_kms_rotation, "FSBP KMS.4", severity="medium"),
    Rule("cloudwatch-log-group-retention", "Log groups have a retention (>= 7 dev, >= 365 prod)",
         LOG_GROUPS, check_log_group_retention, "FSBP CloudWatch.16", severity="low"),
    Rule("cloudwatch-log-group-encrypted", "Log groups encrypted with the project KMS key",
         LOG_GROUPS, check_log_group_encrypted, "AWSGuard cloudwatch-log-group-encrypted", severity="medium"),
    Rule("secretsmanager-kms", "Secrets encrypted with the project KMS key",
         SECRETS, check_secret_kms, "AWSGuard secretsmanager-secret-encrypted-with-cmk", severity="medium"),
)
