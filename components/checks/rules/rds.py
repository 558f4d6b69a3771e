"""RDS: encryption, access, backups, protection, versions, TLS.

Rules read resources through :mod:`components.checks.graph`; :data:`RULES` lists this module's.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from components.checks.graph import (
    Context, RDS_CLUSTERS, RDS_CLUSTER_PARAMETER_GROUPS, RDS_INSTANCES, RDS_PARAMETER_GROUPS, Rule,
    as_int, as_list, falsy, get, present, prod_only, truthy,
)


def check_rds_storage_encrypted(r: Any, ctx: Context) -> list[str]:
    """FSBP RDS.3: RDS DB instances should have encryption at rest enabled (and RDS.4 for clusters)."""
    if not truthy(get(r, "storageEncrypted")):
        return [f"{r.name}: storageEncrypted is not true"]
    return []


def check_rds_public_access(r: Any, ctx: Context) -> list[str]:
    """FSBP RDS.2: RDS DB instances should prohibit public access (PubliclyAccessible false)."""
    if truthy(get(r, "publiclyAccessible")):
        return [f"{r.name}: publiclyAccessible is true"]
    return []


def check_rds_backup_retention(r: Any, ctx: Context) -> list[str]:
    """FSBP RDS.11: automatic backups enabled, here with at least 7 days of retention."""
    days = as_int(get(r, "backupRetentionPeriod"))
    if days is None or days < 7:
        return [f"{r.name}: backupRetentionPeriod is {days!r}, needs >= 7 days"]
    return []


def check_rds_deletion_protection(r: Any, ctx: Context) -> list[str]:
    """FSBP RDS.8: RDS DB instances should have deletion protection enabled (prod)."""
    if not truthy(get(r, "deletionProtection")):
        return [f"{r.name}: deletionProtection is not true in {ctx.environment}"]
    return []


def check_rds_multi_az(r: Any, ctx: Context) -> list[str]:
    """FSBP RDS.5: RDS DB instances should be configured with multiple Availability Zones (prod)."""
    if not truthy(get(r, "multiAz")):
        return [f"{r.name}: multiAz is not true in {ctx.environment}"]
    return []


def check_rds_auto_minor_version_upgrade(r: Any, ctx: Context) -> list[str]:
    """FSBP RDS.13: RDS automatic minor version upgrades should be enabled (the default)."""
    if falsy(get(r, "autoMinorVersionUpgrade")):
        return [f"{r.name}: autoMinorVersionUpgrade is false (security patches would not apply)"]
    return []


# PostgreSQL majors in RDS standard support (13 left standard support in Feb 2026); older majors
# either cannot be created or bill RDS Extended Support.
RDS_POSTGRES_MIN_MAJOR = 14


def check_rds_engine_version(r: Any, ctx: Context) -> list[str]:
    """Project floor (docs/architecture.md: RDS PostgreSQL, current major): a major in RDS standard support."""
    engine = get(r, "engine")
    if engine not in ("postgres", "aurora-postgresql"):
        return [f"{r.name}: engine is {engine!r}, the Orthanc index uses PostgreSQL"]
    version = str(get(r, "engineVersion") or "")
    match = re.match(r"(\d+)", version)
    if not match:
        return [f"{r.name}: engineVersion {version!r} is not pinned to a PostgreSQL major"]
    if int(match.group(1)) < RDS_POSTGRES_MIN_MAJOR:
        return [f"{r.name}: PostgreSQL {version} is older than {RDS_POSTGRES_MIN_MAJOR} "
                f"(out of RDS standard support)"]
    return []


def check_rds_force_ssl(r: Any, ctx: Context) -> list[str]:
    """AWSGuard rds-force-ssl / docs/architecture.md floor: the instance's parameter group sets rds.force_ssl=1.

    Relation: the instance's ``parameterGroupName`` must refer to a declared ParameterGroup (by its
    name or mocked id) whose ``parameters`` hold ``rds.force_ssl`` = 1. PostgreSQL 15+ defaults to
    1 in the *default* group, but a custom group is what pins it against a later edit.
    """
    key = "dbClusterParameterGroupName" if r.type in RDS_CLUSTERS else "parameterGroupName"
    types = RDS_CLUSTER_PARAMETER_GROUPS if r.type in RDS_CLUSTERS else RDS_PARAMETER_GROUPS
    if not present(r, key):
        return [f"{r.name}: no {key}; attach a parameter group with rds.force_ssl = 1"]
    groups = ctx.targets(r, key, types)
    if not groups:
        return [f"{r.name}: {key} {get(r, key, allow_unknown=True)!r} is not a parameter group "
                f"declared in this stack"]
    for group in groups:
        for parameter in as_list(get(group, "parameters")):
            if isinstance(parameter, Mapping) and parameter.get("name") == "rds.force_ssl":
                if str(parameter.get("value")) == "1":
                    return []
                return [f"{r.name}: parameter group {group.name} sets rds.force_ssl = "
                        f"{parameter.get('value')!r}, needs 1"]
    return [f"{r.name}: parameter group {groups[0].name} does not set rds.force_ssl = 1"]


RULES: tuple[Rule, ...] = (
    Rule("rds-storage-encrypted", "RDS storage is encrypted at rest",
         RDS_INSTANCES + RDS_CLUSTERS, check_rds_storage_encrypted, "FSBP RDS.3 / RDS.4"),
    Rule("rds-instance-public-access-check", "RDS instances are not publicly accessible",
         RDS_INSTANCES, check_rds_public_access, "FSBP RDS.2", severity="critical"),
    Rule("rds-force-ssl", "RDS parameter group sets rds.force_ssl = 1",
         RDS_INSTANCES + RDS_CLUSTERS, check_rds_force_ssl, "docs/architecture.md security posture", scope="stack"),
    Rule("rds-backup-retention", "RDS automated backups kept at least 7 days",
         RDS_INSTANCES + RDS_CLUSTERS, check_rds_backup_retention, "FSBP RDS.11", severity="medium"),
    Rule("rds-deletion-protection", "RDS deletion protection on in prod",
         RDS_INSTANCES + RDS_CLUSTERS, check_rds_deletion_protection, "FSBP RDS.8", severity="medium",
         applies=prod_only),
    Rule("rds-multi-az", "RDS is Multi-AZ in prod",
         RDS_INSTANCES, check_rds_multi_az, "FSBP RDS.5", severity="medium", applies=prod_only),
    Rule("rds-auto-minor-version-upgrade", "RDS applies minor version upgrades",
         RDS_INSTANCES, check_rds_auto_minor_version_upgrade, "FSBP RDS.13", severity="medium"),
    Rule("rds-engine-version-supported", "RDS PostgreSQL major in standard support",
         RDS_INSTANCES, check_rds_engine_version, "docs/architecture.md: current PostgreSQL major", severity="medium"),
)
