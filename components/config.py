"""Typed stack configuration: every setting, its default per environment, and its validation.

One module holds every key a ``Pulumi.<stack>.yaml`` may set under the ``dicom-annotate:``
namespace. :func:`load_stack_config` reads them from the running Pulumi program;
:meth:`StackConfig.from_mapping` reads a plain mapping (the YAML file, tests, the offline plan).
Validation happens once, at program start, and raises :class:`ConfigError` whose message names
the key and what is wrong.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Optional

PROJECT = "dicom-annotate"

# orthancteam/orthanc is pinned: the config generator and health probe are tested against it.
DEFAULT_ORTHANC_IMAGE = "orthancteam/orthanc:25.1.1"
# The same image from Docker Hub (optionally pinned by digest), or from an ECR private repository
# of the stack's region - a pull-through cache of Docker Hub or a mirror - pinned by digest.
DOCKER_HUB_IMAGE = re.compile(r"orthancteam/orthanc:\d+\.\d+\.\d+(-full)?(@sha256:[0-9a-f]{64})?")
ECR_IMAGE = re.compile(r"(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?/"
                       r"(?P<repository>[a-z0-9][a-z0-9._/-]*)(:[\w.-]+)?@sha256:[0-9a-f]{64}")

# Values shipped as examples that a real deployment must replace: AWS's documentation account
# and an all-zero id, and the DNS names reserved for examples (RFC 2606 / RFC 6761).
PLACEHOLDER_ACCOUNTS = ("123456789012", "000000000000")
PLACEHOLDER_DOMAIN = re.compile(r"(^|.*\.)(example(\.com|\.net|\.org)?|test|invalid|localhost)$")
# Stack names become part of bucket and repository names, which take lower-case only.
STACK_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")

# RDS PostgreSQL memory per class (GiB). AWS documents max_connections for RDS for PostgreSQL as
# LEAST({DBInstanceClassMemory/9531392}, 5000) ("Maximum number of database connections",
# https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/CHAP_Limits.html#RDS_Limits.MaxConnections),
# where DBInstanceClassMemory is the class's memory less what the OS and RDS processes keep
# (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_ParamValuesRef.html) - a figure AWS
# does not publish. So the stack does not guess the default: the parameter group sets
# max_connections to the formula over a conservative estimate (components/orthanc.py), and every
# budget (Orthanc's IndexConnectionsCount, the portal's pool) is taken from that same number.
RDS_CLASS_MEMORY_GIB = {
    "db.t4g.micro": 1, "db.t4g.small": 2, "db.t4g.medium": 4, "db.t4g.large": 8,
    "db.t3.micro": 1, "db.t3.small": 2, "db.t3.medium": 4, "db.t3.large": 8,
    "db.m7g.large": 8, "db.m7g.xlarge": 16, "db.m7g.2xlarge": 32,
    "db.m6g.large": 8, "db.m6g.xlarge": 16, "db.r7g.large": 16, "db.r7g.xlarge": 32,
    "db.r6g.large": 16, "db.r6g.xlarge": 32,
}
RDS_BYTES_PER_CONNECTION = 9531392
# Observed defaults (2 GiB: 198, 4 GiB: 413, 8 GiB: 856) put RDS's own share at 260-430 MiB; the
# estimate keeps max(256 MiB, 9 %) back: at or below every observed default, within 10 % of it.
RDS_RESERVED_MIB_MIN = 256
RDS_RESERVED_FRACTION = 0.09

# Fargate task sizes AWS accepts: cpu units → allowed memory MiB.
FARGATE_SIZES = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4097, 1024)),
    1024: tuple(range(2048, 8193, 1024)),
    2048: tuple(range(4096, 16385, 1024)),
    4096: tuple(range(8192, 30721, 1024)),
}

ENVIRONMENTS = ("dev", "prod")
# No "none": orthancteam/orthanc is pulled from Docker Hub, which private tasks reach only via NAT.
NAT_MODES = ("single", "one-per-az")
PORTAL_MFA_MODES = ("optional", "required")
HOSTNAME = re.compile(r"(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


@dataclass(frozen=True)
class TaskSize:
    """One Fargate service's size and scaling (components/fargate.py): what Orthanc and the portal each set."""

    cpu: int
    memory: int
    min_tasks: int
    max_tasks: int
    cpu_target_percent: int
    wait_for_steady_state: bool


# AWS's accepted ranges (days) of the three recovery settings below.
SECRET_RECOVERY_DAYS = range(7, 31)   # Secrets Manager DeleteSecret RecoveryWindowInDays
KEY_DELETION_DAYS = range(7, 31)      # KMS ScheduleKeyDeletion PendingWindowInDays
DB_BACKUP_DAYS = range(0, 36)         # RDS BackupRetentionPeriod (0 turns automated backups off)


@dataclass(frozen=True)
class Retention:
    """How long an environment can get back what was deleted, in days: the one place for these.

    - ``secret_recovery_days``: a deleted Secrets Manager secret stays restorable; AWS accepts
      7-30 (RecoveryWindowInDays,
      https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_DeleteSecret.html).
    - ``key_deletion_days``: a KMS key scheduled for deletion can still be cancelled; AWS accepts
      7-30 (PendingWindowInDays,
      https://docs.aws.amazon.com/kms/latest/APIReference/API_ScheduleKeyDeletion.html).
    - ``db_backup_days``: RDS keeps automated backups (point-in-time restore); AWS accepts 0-35
      for a DB instance (BackupRetentionPeriod,
      https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_WorkingWithAutomatedBackups.BackupRetention.html).
      The default of ``dbBackupRetentionDays``.

    Prod keeps the longest AWS allows; dev the shortest windows and a week of backups.
    """

    secret_recovery_days: int
    key_deletion_days: int
    db_backup_days: int

    def __post_init__(self) -> None:
        for name, allowed in (("secret_recovery_days", SECRET_RECOVERY_DAYS),
                              ("key_deletion_days", KEY_DELETION_DAYS), ("db_backup_days", DB_BACKUP_DAYS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"Retention.{name}: {getattr(self, name)} is outside AWS's "
                                 f"{allowed.start}..{allowed.stop - 1} days")

    @staticmethod
    def of(prod: bool) -> "Retention":
        """The retention of prod, or of every other environment."""
        return PROD_RETENTION if prod else DEV_RETENTION


DEV_RETENTION = Retention(secret_recovery_days=7, key_deletion_days=7, db_backup_days=7)
PROD_RETENTION = Retention(secret_recovery_days=30, key_deletion_days=30, db_backup_days=35)


class ConfigError(ValueError):
    """A stack setting is missing or invalid; the message starts with the full key."""


def _key(name: str) -> str:
    return f"{PROJECT}:{name}"


def camel_case(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def rds_max_connections(instance_class: str) -> int:
    """``max_connections`` the stack sets for a class: AWS's formula over DBInstanceClassMemory,
    estimated conservatively (see RDS_RESERVED_*), capped at 5000 as AWS caps it."""
    gib = RDS_CLASS_MEMORY_GIB.get(instance_class)
    if gib is None:
        raise ConfigError(
            f"{_key('dbInstanceClass')}: {instance_class!r} is not in the known class table "
            f"({', '.join(sorted(RDS_CLASS_MEMORY_GIB))})")
    nominal_mib = gib * 1024
    usable_mib = nominal_mib - max(RDS_RESERVED_MIB_MIN, nominal_mib * RDS_RESERVED_FRACTION)
    return int(min(usable_mib * 1024 * 1024 // RDS_BYTES_PER_CONNECTION, 5000))


@dataclass(frozen=True)
class StackConfig:
    """All settings of one stack. Field names are snake_case; YAML keys are their camelCase."""

    environment: str = "dev"
    region: str = "us-east-1"
    # Network: create a VPC, or bring your own (vpcId + 2 public + 2 private subnet ids).
    vpc_id: Optional[str] = None
    public_subnet_ids: tuple[str, ...] = ()
    private_subnet_ids: tuple[str, ...] = ()
    vpc_cidr: str = "10.40.0.0/16"
    nat_gateways: Optional[str] = None            # single (dev default) / one-per-az (prod default)
    interface_endpoints: Optional[bool] = None    # default: off (dev) / on (prod)
    flow_logs: bool = True
    # Bring-your-own VPC that already has them: skip our S3 gateway endpoint ("route already
    # exists"), or create our interface endpoints without private DNS ("conflicting DNS domain").
    s3_gateway_endpoint: bool = True
    interface_endpoint_private_dns: bool = True
    # Edge
    certificate_arn: Optional[str] = None
    allow_http: bool = False
    # Who may reach the ALB. Default: everyone on HTTPS; nobody on a plain-HTTP (allowHttp) stack
    # until set, since Orthanc's admin basic-auth would cross the internet in clear text.
    alb_ingress_cidrs: Optional[tuple[str, ...]] = None
    dicom_nlb: bool = False
    dicom_allowed_cidrs: tuple[str, ...] = ()
    # Orthanc service
    orthanc_image: str = DEFAULT_ORTHANC_IMAGE
    orthanc_cpu: Optional[int] = None             # default: 512 (dev) / 1024 (prod) CPU units
    orthanc_memory: Optional[int] = None          # default: 1024 (dev) / 2048 (prod) MiB
    min_tasks: Optional[int] = None               # default: 1 (dev) / 2 (prod)
    max_tasks: Optional[int] = None               # default: 2 (dev) / 6 (prod)
    cpu_target_percent: int = 60
    # `pulumi up` waits for each ECS service to reach a steady state, so a crash-looping task fails
    # the deployment (the circuit breaker rolls it back) instead of reporting success. Prod: always.
    wait_for_steady_state: bool = True
    # Database
    db_instance_class: Optional[str] = None       # default: db.t4g.micro (dev) / db.m7g.large (prod)
    db_engine_version: str = "17"
    db_allocated_storage_gb: int = 20
    db_max_allocated_storage_gb: int = 200
    db_multi_az: Optional[bool] = None            # default: off (dev) / on (prod)
    db_backup_retention_days: Optional[int] = None  # default: Retention.db_backup_days of the environment
    deletion_protection: Optional[bool] = None    # default: off (dev) / on (prod)
    # Logs
    log_retention_days: Optional[int] = None      # default: 30 (dev) / 365 (prod)
    # Labeling bundle
    notebook_instance_type: str = "ml.t3.medium"
    notebook_idle_minutes: int = 60
    # MONAI + PyTorch wheels in a conda env do not fit SageMaker's 5 GB default volume.
    notebook_volume_gb: Optional[int] = None      # default: 20 (dev) / 50 (prod)
    lambda_memory_mb: int = 1024
    lambda_timeout_s: int = 60
    deidentify: bool = True
    gt_worker_origins: tuple[str, ...] = ()       # default: the regional GT worker portal origin
    # Viewer asset location (CloudFront): the *.cloudfront.net name, or your own name + ACM
    # certificate (CloudFront reads certificates from us-east-1 only; TLS 1.2_2021 floor then).
    viewer_assets_domain: Optional[str] = None
    viewer_assets_certificate_arn: Optional[str] = None
    # Labeling portal (ECS behind the ALB, Cognito sign-in through the ALB's authenticate action).
    portal_enabled: Optional[bool] = None         # default: on when the ALB has HTTPS (certificateArn)
    portal_cpu: Optional[int] = None              # default: 256 (dev) / 512 (prod) CPU units
    portal_memory: Optional[int] = None           # default: 512 (dev) / 1024 (prod) MiB
    portal_min_tasks: Optional[int] = None        # default: 1 (dev) / 2 (prod)
    portal_max_tasks: Optional[int] = None        # default: 2 (dev) / 4 (prod)
    portal_domain: Optional[str] = None           # host users browse (covered by certificateArn); default ALB name
    portal_mfa: Optional[str] = None              # optional (dev default) / required (prod, enforced)
    cognito_domain_prefix: Optional[str] = None   # hosted sign-in domain; default "<stack prefix>-portal-<account>"
    tags: Mapping[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], stack: str,
                     region: Optional[str] = None) -> "StackConfig":
        """Build from ``{"dicom-annotate:key": value}`` (or bare ``key``) as a stack YAML holds."""
        known = {camel_case(f.name): f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for raw_key, value in values.items():
            namespace, _, name = raw_key.rpartition(":")
            if namespace and namespace != PROJECT:
                continue  # aws:region and other providers' keys
            if name not in known:
                close = [k for k in known if k.lower() == name.lower()]
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ConfigError(f"{_key(name)}: unknown setting{hint}")
            kwargs[known[name].name] = _coerce(known[name], value)
        kwargs.setdefault("environment", "prod" if stack.startswith("prod") else "dev")
        if region:
            kwargs.setdefault("region", region)
        config = cls(**kwargs).with_defaults().validated()
        config.check_stack_name(stack)
        return config

    def with_defaults(self) -> "StackConfig":
        """Fill the per-environment defaults (None means 'the environment decides')."""
        prod = self.environment == "prod"
        defaults = {
            "nat_gateways": "one-per-az" if prod else "single",
            "interface_endpoints": prod,
            "orthanc_cpu": 1024 if prod else 512,
            "orthanc_memory": 2048 if prod else 1024,
            "notebook_volume_gb": 50 if prod else 20,
            "min_tasks": 2 if prod else 1,
            "max_tasks": 6 if prod else 2,
            "db_instance_class": "db.m7g.large" if prod else "db.t4g.micro",
            "db_multi_az": prod,
            "db_backup_retention_days": Retention.of(prod).db_backup_days,
            "deletion_protection": prod,
            "log_retention_days": 365 if prod else 30,
            # The ALB's authenticate-cognito action exists only on HTTPS listeners.
            "portal_enabled": self.certificate_arn is not None,
            "portal_cpu": 512 if prod else 256,
            "portal_memory": 1024 if prod else 512,
            "portal_min_tasks": 2 if prod else 1,
            "portal_max_tasks": 4 if prod else 2,
            "portal_mfa": "required" if prod else "optional",
        }
        defaults["alb_ingress_cidrs"] = () if self.allow_http else ("0.0.0.0/0",)
        filled = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        if not self.gt_worker_origins:
            filled["gt_worker_origins"] = (f"https://*.labeling.{self.region}.sagemaker.aws",)
        return dataclasses.replace(self, **filled)

    # ------------------------------------------------------------------ validation
    def validated(self) -> "StackConfig":
        """Return self, or raise ConfigError naming the first invalid key."""
        def fail(name: str, message: str) -> None:
            raise ConfigError(f"{_key(name)}: {message}")

        self._validate_network(fail)
        self._validate_edge(fail)
        self._validate_orthanc(fail)
        self._validate_database(fail)
        self._validate_labeling(fail)
        self._validate_viewer_assets(fail)
        self._validate_portal(fail)
        return self

    def _validate_network(self, fail) -> None:
        if self.environment not in ENVIRONMENTS:
            fail("environment", f"{self.environment!r} is not one of {', '.join(ENVIRONMENTS)}")
        if not re.fullmatch(r"[a-z]{2}(-gov)?-[a-z]+-\d", self.region):
            fail("region", f"{self.region!r} is not an AWS region name")
        byo = (self.vpc_id, self.public_subnet_ids, self.private_subnet_ids)
        if any(byo):
            if not self.vpc_id or not re.fullmatch(r"vpc-[0-9a-f]{8,17}", self.vpc_id):
                fail("vpcId", f"{self.vpc_id!r} is not a VPC id (vpc-…); bring-your-own VPC needs it")
            for name, ids in (("publicSubnetIds", self.public_subnet_ids),
                              ("privateSubnetIds", self.private_subnet_ids)):
                if len(ids) != 2 or len(set(ids)) != 2:
                    fail(name, f"bring-your-own VPC needs exactly 2 distinct subnet ids (got {list(ids)})")
                for sid in ids:
                    if not re.fullmatch(r"subnet-[0-9a-f]{8,17}", sid):
                        fail(name, f"{sid!r} is not a subnet id (subnet-…)")
            if set(self.public_subnet_ids) & set(self.private_subnet_ids):
                fail("privateSubnetIds", "a subnet cannot be both public and private")
        else:
            try:
                net = ipaddress.ip_network(self.vpc_cidr)
            except ValueError:
                fail("vpcCidr", f"{self.vpc_cidr!r} is not a CIDR block")
            else:
                if not 16 <= net.prefixlen <= 22 or not net.is_private:
                    fail("vpcCidr", f"{self.vpc_cidr} must be a private block between /16 and /22")
        if not self.byo_vpc:
            for name, on in (("s3GatewayEndpoint", self.s3_gateway_endpoint),
                             ("interfaceEndpointPrivateDns", self.interface_endpoint_private_dns)):
                if not on:
                    fail(name, "may only be false with a brought VPC (vpcId) that already has its own; "
                               "the VPC this stack creates needs it")
        if not self.interface_endpoint_private_dns and not self.interface_endpoints:
            fail("interfaceEndpointPrivateDns", "applies to interfaceEndpoints: true only")
        if self.nat_gateways not in NAT_MODES:
            fail("natGateways", f"{self.nat_gateways!r} is not one of {', '.join(NAT_MODES)}")

    def _validate_edge(self, fail) -> None:
        if self.certificate_arn:
            if not re.fullmatch(r"arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}",
                                self.certificate_arn):
                fail("certificateArn", f"{self.certificate_arn!r} is not an ACM certificate ARN")
            if self.allow_http:
                fail("allowHttp", "must be false when certificateArn is set (HTTP only redirects)")
        else:
            if self.environment == "prod":
                fail("certificateArn", "is required in prod (the ALB serves HTTPS only); "
                                       "set it with `pulumi config set certificateArn arn:aws:acm:…`")
            if not self.allow_http:
                fail("certificateArn", "is not set: give an ACM certificate ARN, or set allowHttp: true "
                                       "to run dev over plain HTTP (not for real patient data)")
        if self.allow_http and self.environment != "dev":
            fail("allowHttp", "is only allowed in dev")
        for name, cidrs in (("albIngressCidrs", self.alb_ingress_cidrs),
                            ("dicomAllowedCidrs", self.dicom_allowed_cidrs)):
            for cidr in cidrs:
                try:
                    ipaddress.ip_network(cidr)
                except ValueError:
                    fail(name, f"{cidr!r} is not a CIDR block")
        if self.https and not self.alb_ingress_cidrs:
            fail("albIngressCidrs", "needs at least one CIDR block")
        if self.allow_http and any(ipaddress.ip_network(c).prefixlen == 0 for c in self.alb_ingress_cidrs):
            fail("albIngressCidrs", "plain HTTP (allowHttp) to the whole internet would send Orthanc's admin "
                                    "credentials in clear text: list your own CIDR blocks, or set certificateArn")
        if self.dicom_nlb:
            if not self.dicom_allowed_cidrs:
                fail("dicomAllowedCidrs", "dicomNlb: true needs the modality CIDR blocks allowed on 4242")
            if any(ipaddress.ip_network(c).prefixlen == 0 for c in self.dicom_allowed_cidrs):
                fail("dicomAllowedCidrs", "0.0.0.0/0 would expose DICOM 4242 to the internet")

    def _validate_orthanc(self, fail) -> None:
        mirror = ECR_IMAGE.fullmatch(self.orthanc_image)
        if not DOCKER_HUB_IMAGE.fullmatch(self.orthanc_image) and not mirror:
            fail("orthancImage", f"{self.orthanc_image!r} must be orthancteam/orthanc:<x.y.z> (Docker Hub), or an "
                                 "ECR image of this region pinned by digest (<account>.dkr.ecr.<region>.amazonaws.com/"
                                 "<repository>[:tag]@sha256:<64 hex>)")
        if mirror and mirror["region"] != self.region:
            fail("orthancImage", f"the ECR image is in {mirror['region']}, the stack in {self.region}: the tasks "
                                 "pull from their own region's registry (a pull-through cache is regional)")
        _validate_task_size(fail, self.orthanc_size, "orthancCpu", "orthancMemory", "minTasks", "maxTasks")
        if not 10 <= self.cpu_target_percent <= 90:
            fail("cpuTargetPercent", f"{self.cpu_target_percent} must be within 10..90")

    def _validate_database(self, fail) -> None:
        if not self.db_instance_class.startswith("db."):
            fail("dbInstanceClass", f"{self.db_instance_class!r} is not an RDS class (db.…)")
        rds_max_connections(self.db_instance_class)  # raises for an unknown class
        if not re.fullmatch(r"1[4-9](\.\d+)?", self.db_engine_version):
            fail("dbEngineVersion", f"{self.db_engine_version!r} must be a supported PostgreSQL major (14-19)")
        if not 20 <= self.db_allocated_storage_gb <= self.db_max_allocated_storage_gb:
            fail("dbAllocatedStorageGb", "must be at least 20 and at most dbMaxAllocatedStorageGb")
        # At least a day: the stack never turns automated backups off (AWS would accept 0).
        if not 1 <= self.db_backup_retention_days <= DB_BACKUP_DAYS[-1]:
            fail("dbBackupRetentionDays", f"{self.db_backup_retention_days} must be within 1..{DB_BACKUP_DAYS[-1]}")
        if self.environment == "prod":
            if not self.deletion_protection:
                fail("deletionProtection", "must be true in prod")
            if not self.db_multi_az:
                fail("dbMultiAz", "must be true in prod")
            if not self.wait_for_steady_state:
                fail("waitForSteadyState", "must be true in prod (otherwise `pulumi up` reports success "
                                           "while the tasks crash-loop)")

    def _validate_labeling(self, fail) -> None:
        valid_retention = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
                           1827, 2192, 2557, 2922, 3288, 3653)
        if self.log_retention_days not in valid_retention:
            fail("logRetentionDays", f"{self.log_retention_days} is not a CloudWatch retention value")
        if not self.notebook_instance_type.startswith("ml."):
            fail("notebookInstanceType", f"{self.notebook_instance_type!r} is not a SageMaker type (ml.…)")
        if not 20 <= self.notebook_volume_gb <= 16384:
            fail("notebookVolumeGb", f"{self.notebook_volume_gb} must be within 20..16384 GB (PyTorch needs room)")
        if not 5 <= self.notebook_idle_minutes <= 1440:
            fail("notebookIdleMinutes", "must be within 5..1440")
        if not 128 <= self.lambda_memory_mb <= 10240:
            fail("lambdaMemoryMb", "must be within 128..10240")
        if not 3 <= self.lambda_timeout_s <= 900:
            fail("lambdaTimeoutS", "must be within 3..900")
        for origin in self.gt_worker_origins:
            if not origin.startswith("https://"):
                fail("gtWorkerOrigins", f"{origin!r} must be an https:// origin")

    def _validate_viewer_assets(self, fail) -> None:
        domain, cert = self.viewer_assets_domain, self.viewer_assets_certificate_arn
        if bool(domain) != bool(cert):
            fail("viewerAssetsDomain" if cert else "viewerAssetsCertificateArn",
                 "viewerAssetsDomain and viewerAssetsCertificateArn go together (your name needs its certificate)")
        if domain and not HOSTNAME.fullmatch(domain):
            fail("viewerAssetsDomain", f"{domain!r} is not a DNS host name")
        if cert and not re.fullmatch(r"arn:aws[a-z-]*:acm:us-east-1:\d{12}:certificate/[0-9a-f-]{36}", cert):
            fail("viewerAssetsCertificateArn", f"{cert!r} is not an ACM certificate ARN in us-east-1 "
                                               "(CloudFront only uses certificates from us-east-1)")

    def _validate_portal(self, fail) -> None:
        if self.portal_mfa not in PORTAL_MFA_MODES:
            fail("portalMfa", f"{self.portal_mfa!r} is not one of {', '.join(PORTAL_MFA_MODES)}")
        if self.environment == "prod" and self.portal_mfa != "required":
            fail("portalMfa", "must be required in prod (annotators see patient images)")
        if self.portal_domain is not None and not HOSTNAME.fullmatch(self.portal_domain):
            fail("portalDomain", f"{self.portal_domain!r} is not a DNS host name (no scheme, no path)")
        prefix = self.cognito_domain_prefix
        if prefix is not None and (not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", prefix)
                                   or any(word in prefix for word in ("aws", "amazon", "cognito"))):
            fail("cognitoDomainPrefix", f"{prefix!r} must be 1-63 lower-case letters, digits and hyphens, "
                                        "without 'aws', 'amazon' or 'cognito' (Cognito's rule)")
        _validate_task_size(fail, self.portal_size, "portalCpu", "portalMemory", "portalMinTasks", "portalMaxTasks")
        if self.portal_enabled and not self.https:
            fail("portalEnabled", "the portal signs users in through the ALB's authenticate-cognito action, "
                                  "which AWS offers only on HTTPS listeners: set certificateArn (a plain-HTTP "
                                  "allowHttp stack runs without the portal)")
        if self.portal_enabled and not self.portal_domain:
            fail("portalDomain", "is required with the portal: users and Cognito's sign-in callback use this "
                                 "host, and the ALB's own *.elb.amazonaws.com name is not on your certificate; "
                                 "set the name certificateArn covers (and point it at the ALB), or portalEnabled: false")

    def placeholders(self) -> list[str]:
        """Example values a real deployment must replace (the offline plan lists them as notes)."""
        found = []
        for name, arn in (("certificateArn", self.certificate_arn),
                          ("viewerAssetsCertificateArn", self.viewer_assets_certificate_arn)):
            if arn and (arn.split(":")[4] in PLACEHOLDER_ACCOUNTS or "/00000000-0000-" in arn):
                found.append(f"{_key(name)}: {arn} is a placeholder (example account or id): set your ACM "
                             f"certificate with `pulumi config set {name} arn:aws:acm:…`")
        for name, domain in (("portalDomain", self.portal_domain), ("viewerAssetsDomain", self.viewer_assets_domain)):
            if domain and PLACEHOLDER_DOMAIN.fullmatch(domain):
                found.append(f"{_key(name)}: {domain} is a name reserved for examples: set the host name your "
                             f"certificate covers with `pulumi config set {name} <host>`")
        return found

    def check_stack_name(self, stack: str) -> None:
        """Names derived from the stack name must be valid for AWS (resource names: components/names.py)."""
        if not STACK_NAME.fullmatch(stack):
            raise ConfigError(f"stack name {stack!r}: use lower-case letters, digits and hyphens (it becomes part "
                              "of S3 bucket and ECR repository names, which allow nothing else)")
        if self.portal_enabled and self.cognito_domain_prefix is None:
            prefix = f"da-{stack}-portal-{'0' * 12}"  # "<stack prefix>-portal-<account id>"
            if len(prefix) > 63:
                raise ConfigError(f"{_key('cognitoDomainPrefix')}: the default sign-in domain prefix for stack "
                                  f"{stack!r} is {len(prefix)} characters, Cognito allows 63: set "
                                  "cognitoDomainPrefix or use a shorter stack name")

    # ------------------------------------------------------------------ derived facts
    @property
    def byo_vpc(self) -> bool:
        return self.vpc_id is not None

    @property
    def https(self) -> bool:
        return self.certificate_arn is not None

    @property
    def db_max_connections(self) -> int:
        return rds_max_connections(self.db_instance_class)

    @property
    def prod(self) -> bool:
        return self.environment == "prod"

    @property
    def retention(self) -> Retention:
        return Retention.of(self.prod)

    @property
    def orthanc_size(self) -> TaskSize:
        return TaskSize(self.orthanc_cpu, self.orthanc_memory, self.min_tasks, self.max_tasks,
                        self.cpu_target_percent, self.wait_for_steady_state)

    @property
    def portal_size(self) -> TaskSize:
        return TaskSize(self.portal_cpu, self.portal_memory, self.portal_min_tasks, self.portal_max_tasks,
                        self.cpu_target_percent, self.wait_for_steady_state)

    def warnings(self) -> list[str]:
        """Settings that are allowed but deserve a line in the plan."""
        notes = []
        if self.allow_http:
            notes.append(f"{_key('allowHttp')}: the ALB serves plain HTTP; do not load real patient data")
        if "0.0.0.0/0" in self.alb_ingress_cidrs:
            notes.append(f"{_key('albIngressCidrs')}: the ALB accepts the whole internet on 443/80")
        notes.extend(f"{problem} (pulumi preview/up refuse it)" for problem in self.placeholders())
        if not self.alb_ingress_cidrs:
            notes.append(f"{_key('albIngressCidrs')}: none set, so the plain-HTTP ALB admits nobody; list your "
                         "own CIDR blocks to reach Orthanc")
        if not self.portal_enabled:
            notes.append(f"{_key('portalEnabled')}: no labeling portal in this stack"
                         + ("" if self.https else " (it needs certificateArn: ALB sign-in is HTTPS-only)"))
        if self.environment == "prod" and self.nat_gateways == "single":
            notes.append(f"{_key('natGateways')}: one NAT gateway is a single point of failure in prod")
        return notes


def _validate_task_size(fail, size: TaskSize, cpu_key: str, memory_key: str, min_key: str, max_key: str) -> None:
    """A Fargate service's size (Orthanc's and the portal's, each under its own keys)."""
    if size.cpu not in FARGATE_SIZES:
        fail(cpu_key, f"{size.cpu} is not a Fargate CPU size ({sorted(FARGATE_SIZES)})")
    if size.memory not in FARGATE_SIZES[size.cpu]:
        allowed = FARGATE_SIZES[size.cpu]
        fail(memory_key, f"{size.memory} MiB is not allowed with {size.cpu} CPU units ({allowed[0]}-{allowed[-1]})")
    if size.min_tasks < 1:
        fail(min_key, f"{size.min_tasks} must be at least 1")
    if size.max_tasks < size.min_tasks:
        fail(max_key, f"{size.max_tasks} is below {min_key} {size.min_tasks}")


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    """Convert a YAML/Pulumi value to the field's type, or raise ConfigError naming the key."""
    name = _key(camel_case(f.name))
    annotation = str(f.type)
    if isinstance(value, dict) and set(value) == {"secure"}:
        raise ConfigError(f"{name}: is a secret but this setting is not one; store it in plain text")
    try:
        if "tuple" in annotation:
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise TypeError("a list of strings")
            return tuple(value)
        if "Mapping" in annotation:
            if not isinstance(value, dict):
                raise TypeError("a mapping of strings")
            return {str(k): str(v) for k, v in value.items()}
        if "bool" in annotation:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise TypeError("true or false")
        if "int" in annotation:
            if isinstance(value, bool):
                raise TypeError("an integer")
            if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
                return int(value)
            if isinstance(value, int):
                return value
            raise TypeError("an integer")
        if value is None:
            return None
        if not isinstance(value, str):
            raise TypeError("a string")
        return value
    except TypeError as exc:
        raise ConfigError(f"{name}: {value!r} is not {exc}") from None


def load_stack_config() -> StackConfig:
    """Read and validate this stack's settings inside a running Pulumi program."""
    import pulumi

    config = pulumi.Config(PROJECT)
    values: dict[str, Any] = {}
    for f in fields(StackConfig):
        key = camel_case(f.name)
        raw = config.get(key)
        if raw is None:
            continue
        annotation = str(f.type)
        if "tuple" in annotation or "Mapping" in annotation:
            values[key] = config.get_object(key)
        else:
            values[key] = raw
    region = pulumi.Config("aws").get("region")
    stack_config = StackConfig.from_mapping(values, stack=pulumi.get_stack(), region=region)
    placeholders = stack_config.placeholders()
    if placeholders and not is_offline_run():
        raise ConfigError(placeholders[0])
    return stack_config


# ---------------------------------------------------------------------- offline runs
_offline_run = False


@contextlib.contextmanager
def offline_run():
    """While components/checks/offline.py runs the program under mocks (offline plan, tests).

    Settings only a real account can supply (certificates, domains, the built Lambda layer) may then
    be placeholders, reported as notes; ``pulumi preview`` and ``pulumi up`` refuse them.
    """
    global _offline_run
    previous, _offline_run = _offline_run, True
    try:
        yield
    finally:
        _offline_run = previous


def is_offline_run() -> bool:
    return _offline_run
