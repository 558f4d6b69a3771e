"""Platform component: what Orthanc and the labeling portal share.

Declares the ECS cluster, the public ALB (access logs to an SSE-S3 bucket; HTTPS, with HTTP that
only redirects, or plain HTTP on dev's ``allowHttp``) with its security group and the default
target group its listeners forward to, and the PostgreSQL server (RDS, TLS required,
``max_connections`` pinned to the stack's budget) with its generated master credentials in Secrets
Manager and its security group. Each service wires its own rules to the two groups.

Resource names keep the ``<stack prefix>-orthanc-…`` prefix (``PlatformArgs.name_prefix``) and
each child an alias to the Orthanc component, which declared them until the platform was split
out: a new name or parent would replace the database and the load balancer of a deployed stack.
Descriptions that still say "Orthanc" stay for the same reason (a security group's or a subnet
group's description cannot change in place).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.config import Retention
from components.iam import account_service_trust
from components.moved import moved_from
from components.storage import SecureBucket, SecureBucketArgs, encrypted_log_group

DB_PORT = 5432
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
RDS_LOG_EXPORTS = ("postgresql", "upgrade")


@dataclass
class DatabaseSettings:
    """The server: the first database and its master user, size, engine, backups, connection cap."""

    name: str
    username: str
    engine_version: str
    instance_class: str
    allocated_storage_gb: int
    max_allocated_storage_gb: int
    multi_az: bool
    backup_retention_days: int
    # components/config.py rds_max_connections: every connection budget is taken from it.
    max_connections: int
    # RDS observability; None lets the environment decide (on in prod, off in dev).
    performance_insights: Optional[bool] = None
    monitoring_interval_s: Optional[int] = None


@dataclass
class DefaultTarget:
    """The service the ALB's listeners forward to when no rule matches (Orthanc)."""

    port: int
    health_check: aws.lb.TargetGroupHealthCheckArgs
    stickiness: Optional[aws.lb.TargetGroupStickinessArgs] = None


@dataclass
class PlatformArgs:
    vpc_id: pulumi.Input[str]
    public_subnet_ids: pulumi.Input[list]
    private_subnet_ids: pulumi.Input[list]
    kms_key_arn: pulumi.Input[str]
    # None: plain HTTP (allowHttp, dev only); config validation guards it.
    certificate_arn: Optional[str]
    alb_ingress_cidrs: Sequence[str]
    default_target: DefaultTarget
    database: DatabaseSettings
    prod: bool
    deletion_protection: bool
    log_retention_days: int
    # Resource names "<name_prefix>-…" and the URN of the component that declared them before.
    name_prefix: str
    moved_from_urn: Optional[str] = None
    tags: dict[str, str] = field(default_factory=dict)


class Platform(pulumi.ComponentResource):
    """ECS cluster, ALB with listeners and default target, PostgreSQL server with its credentials."""

    def __init__(self, name: str, args: PlatformArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("dicom-annotate:platform:Platform", name, None, opts)
        self._prefix, self._args = args.name_prefix, args
        self._child = pulumi.ResourceOptions(parent=self, aliases=moved_from(args.moved_from_urn))
        self._identity = aws.get_caller_identity_output()
        self.https = args.certificate_arn is not None

        self.cluster = aws.ecs.Cluster(
            f"{self._prefix}-cluster",
            settings=[aws.ecs.ClusterSettingArgs(name="containerInsights", value="enabled")],
            tags=args.tags, opts=self._child)
        self._load_balancer()
        self._database()

        self.cluster_arn = self.cluster.arn
        self.cluster_name = self.cluster.name
        self.alb_arn = self.alb.arn
        self.alb_dns_name = self.alb.dns_name
        self.alb_security_group_id = self.alb_security_group.id
        self.https_listener_arn = self.front_listener.arn
        self.db_address = self.db.address
        self.db_security_group_id = self.db_security_group.id
        self.deletion_protection = args.deletion_protection
        self.max_connections = args.database.max_connections
        self.register_outputs({
            "cluster_name": self.cluster_name, "alb_dns_name": self.alb_dns_name, "db_address": self.db_address,
            "db_secret_arn": self.db_secret_arn,
        })

    # ------------------------------------------------------------------ edge
    def _load_balancer(self) -> None:
        prefix, args = self._prefix, self._args
        tags = args.tags
        self.alb_security_group = aws.ec2.SecurityGroup(
            f"{prefix}-alb-sg", vpc_id=args.vpc_id, tags=tags, opts=self._child,
            description="Orthanc ALB: HTTPS, and HTTP that only redirects, from the configured CIDRs"
            if self.https else "Orthanc ALB: plain HTTP (allowHttp, dev only) from the configured CIDRs")
        for port in ([443, 80] if self.https else [80]):
            for i, cidr in enumerate(args.alb_ingress_cidrs):
                purpose = "HTTPS" if port == 443 else ("HTTP redirect" if self.https else "HTTP (allowHttp)")
                aws.vpc.SecurityGroupIngressRule(
                    f"{prefix}-alb-{port}-{i}", security_group_id=self.alb_security_group.id,
                    description=f"{purpose} from {cidr}", ip_protocol="tcp", from_port=port, to_port=port,
                    cidr_ipv4=cidr, tags=tags, opts=pulumi.ResourceOptions(parent=self.alb_security_group))

        # ELB log delivery writes with SSE-S3 only (a KMS-encrypted bucket rejects it).
        self.alb_logs = SecureBucket(
            f"{prefix}-alb-logs",
            SecureBucketArgs(
                kms_key_arn=None,
                expire_after_days=args.log_retention_days,
                own_policy_statements=lambda arn: pulumi.Output.all(
                    arn, self._identity.account_id, aws.elb.get_service_account_output().arn).apply(
                    lambda v: alb_log_delivery_statements(v[0], v[1], v[2])),
                tags=tags),
            opts=self._child)
        self.alb = aws.lb.LoadBalancer(
            f"{prefix}-alb",
            load_balancer_type="application",
            internal=False,
            subnets=args.public_subnet_ids,
            security_groups=[self.alb_security_group.id],
            drop_invalid_header_fields=True,
            # Large DICOM uploads/downloads (STOW/WADO) outlast the 60 s default.
            idle_timeout=300,
            enable_deletion_protection=args.deletion_protection,
            access_logs=aws.lb.LoadBalancerAccessLogsArgs(bucket=self.alb_logs.id, prefix="alb", enabled=True),
            tags=tags,
            # ELB checks it may write to the bucket when logging is switched on.
            opts=pulumi.ResourceOptions.merge(self._child, pulumi.ResourceOptions(depends_on=[self.alb_logs])))
        target = args.default_target
        self.default_target_group = aws.lb.TargetGroup(
            f"{prefix}-tg",
            port=target.port, protocol="HTTP", target_type="ip", vpc_id=args.vpc_id,
            deregistration_delay=30, health_check=target.health_check, stickiness=target.stickiness,
            tags=tags, opts=self._child)
        forward = [aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=self.default_target_group.arn)]
        if self.https:
            self.front_listener = aws.lb.Listener(
                f"{prefix}-https-listener", load_balancer_arn=self.alb.arn, port=443, protocol="HTTPS",
                certificate_arn=args.certificate_arn, ssl_policy=TLS_POLICY, default_actions=forward,
                tags=tags, opts=self._child)
            self.http_listener = aws.lb.Listener(
                f"{prefix}-http-listener", load_balancer_arn=self.alb.arn, port=80, protocol="HTTP",
                default_actions=[aws.lb.ListenerDefaultActionArgs(
                    type="redirect",
                    redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                        port="443", protocol="HTTPS", status_code="HTTP_301"))],
                tags=tags, opts=self._child)
        else:
            # Only reachable with allowHttp (dev, no certificate); config validation and the plan's
            # warning guard it.
            self.http_listener = aws.lb.Listener(
                f"{prefix}-http-listener", load_balancer_arn=self.alb.arn, port=80, protocol="HTTP",
                default_actions=forward, tags=tags, opts=self._child)
            self.front_listener = self.http_listener
        self.listeners: list[pulumi.Resource] = [self.front_listener, self.http_listener]

    # ------------------------------------------------------------------ database
    def _database(self) -> None:
        prefix, args, db = self._prefix, self._args, self._args.database
        tags, prod = args.tags, args.prod
        self.db_security_group = aws.ec2.SecurityGroup(
            f"{prefix}-db-sg", description="Orthanc index database: 5432 from the Orthanc tasks only", vpc_id=args.vpc_id,
            tags=tags, opts=self._child)
        # Explicit identifier so the exported log groups can be created first, with retention and KMS
        # (RDS would otherwise create them itself, never expiring). A change that forces
        # replacement then fails on the name instead of silently creating an empty database.
        identifier = f"{prefix}-db"
        subnet_group, parameter_group, log_groups = self._db_groups(identifier)
        performance_insights = prod if db.performance_insights is None else db.performance_insights
        monitoring_interval = (60 if prod else 0) if db.monitoring_interval_s is None else db.monitoring_interval_s

        # A generated password in our own secret, not RDS-managed: RDS rotates a managed password
        # every 7 days while Orthanc reads it only at task start, so its reconnects would fail.
        # Rotate deliberately with `pulumi up --replace <this RandomPassword's URN>` (tasks restart).
        db_password = generated_password(f"{prefix}-db-password", self._child)
        db_secret = aws.secretsmanager.Secret(
            f"{prefix}-db-secret", description="Orthanc index database: username, password (ECS injects password)",
            kms_key_id=args.kms_key_arn, recovery_window_in_days=Retention.of(prod).secret_recovery_days, tags=tags,
            opts=self._child)
        self.db = aws.rds.Instance(
            f"{prefix}-db",
            identifier=identifier,
            engine="postgres",
            engine_version=db.engine_version,
            instance_class=db.instance_class,
            allocated_storage=db.allocated_storage_gb,
            max_allocated_storage=db.max_allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=args.kms_key_arn,
            db_name=db.name,
            # Orthanc connects as the master user; the password is a Pulumi secret (encrypted in
            # state) and lives in Secrets Manager under our key.
            username=db.username,
            password=db_password.result,
            port=DB_PORT,
            db_subnet_group_name=subnet_group.name,
            vpc_security_group_ids=[self.db_security_group.id],
            parameter_group_name=parameter_group.name,
            publicly_accessible=False,
            multi_az=db.multi_az,
            deletion_protection=args.deletion_protection,
            backup_retention_period=db.backup_retention_days,
            backup_window="03:00-04:00",
            maintenance_window="sun:04:30-sun:05:30",
            copy_tags_to_snapshot=True,
            delete_automated_backups=not prod,
            skip_final_snapshot=not prod,
            final_snapshot_identifier=f"{prefix}-final" if prod else None,
            auto_minor_version_upgrade=True,
            allow_major_version_upgrade=False,
            apply_immediately=not prod,
            enabled_cloudwatch_logs_exports=list(RDS_LOG_EXPORTS),
            performance_insights_enabled=performance_insights,
            performance_insights_kms_key_id=args.kms_key_arn if performance_insights else None,
            performance_insights_retention_period=7 if performance_insights else None,
            monitoring_interval=monitoring_interval,
            monitoring_role_arn=self._monitoring_role() if monitoring_interval else None,
            tags=tags,
            opts=pulumi.ResourceOptions.merge(self._child, pulumi.ResourceOptions(depends_on=log_groups)))
        # Exposed so that a deploy-time reader (the portal's DB role function) waits for the value.
        self.db_secret_version = aws.secretsmanager.SecretVersion(
            f"{prefix}-db-secret-value",
            secret_id=db_secret.id,
            secret_string=pulumi.Output.all(db_password.result, self.db.address).apply(
                lambda v: json.dumps({"engine": "postgres", "username": db.username, "password": v[0],
                                      "host": v[1], "port": DB_PORT, "dbname": db.name})),
            opts=pulumi.ResourceOptions(parent=db_secret))
        self.db_secret_arn = db_secret.arn

    def _db_groups(self, identifier: str) -> tuple[aws.rds.SubnetGroup, aws.rds.ParameterGroup,
                                                 list[aws.cloudwatch.LogGroup]]:
        """The database's subnet group, parameter group (TLS, max_connections) and exported log groups."""
        prefix, args, db = self._prefix, self._args, self._args.database
        tags = args.tags
        major = db.engine_version.split(".")[0]
        subnet_group = aws.rds.SubnetGroup(
            f"{prefix}-db-subnets", description="Orthanc index: private subnets", subnet_ids=args.private_subnet_ids,
            tags=tags, opts=self._child)
        parameter_group = aws.rds.ParameterGroup(
            f"{prefix}-db-params",
            family=f"postgres{major}",
            description="Orthanc index: TLS required, max_connections pinned to the stack's budget",
            parameters=[
                aws.rds.ParameterGroupParameterArgs(name="rds.force_ssl", value="1"),
                # Static parameter: the number every connection budget is computed from
                # (components/config.py rds_max_connections), not RDS's memory-dependent default.
                aws.rds.ParameterGroupParameterArgs(name="max_connections", value=str(db.max_connections),
                                                    apply_method="pending-reboot"),
            ],
            tags=tags, opts=self._child)
        log_groups = [encrypted_log_group(
            f"{prefix}-db-{export}", f"/aws/rds/instance/{identifier}/{export}",
            retention_days=args.log_retention_days, kms_key_arn=args.kms_key_arn, tags=tags, opts=self._child)
            for export in RDS_LOG_EXPORTS]
        return subnet_group, parameter_group, log_groups

    def _monitoring_role(self) -> pulumi.Output[str]:
        """RDS enhanced monitoring's role (AWS's managed policy for it)."""
        prefix = self._prefix
        partition = aws.get_partition_output().partition
        role = aws.iam.Role(
            f"{prefix}-db-monitoring-role",
            description="RDS enhanced monitoring for the Orthanc index",
            assume_role_policy=self._identity.account_id.apply(
                lambda account: json.dumps(account_service_trust("monitoring.rds.amazonaws.com", account))),
            tags=self._args.tags, opts=self._child)
        aws.iam.RolePolicyAttachment(
            f"{prefix}-db-monitoring-policy",
            role=role.name,
            policy_arn=pulumi.Output.concat(
                "arn:", partition, ":iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"),
            opts=pulumi.ResourceOptions(parent=role))
        return role.arn


def generated_password(name: str, opts: pulumi.ResourceOptions) -> random.RandomPassword:
    """32 letters and digits. Letters guaranteed: the Orthanc image parses env values as JSON, an
    all-digit password would become a number. No special characters: they travel inside JSON,
    connection strings and HTTP basic auth."""
    return random.RandomPassword(name, length=32, special=False, min_upper=2, min_lower=2, min_numeric=2,
                                 opts=opts)


def alb_log_delivery_statements(bucket_arn: str, account_id: str,
                                elb_account_arn: str) -> list[dict]:
    """ELB access-log delivery, only into this account's prefix.

    Regions opened after August 2022 deliver through the service principal; older ones (us-east-1
    among them) through the regional ELB account, so both are allowed.
    """
    resource = f"{bucket_arn}/alb/AWSLogs/{account_id}/*"
    return [{
        "Sid": "AllowElbLogDelivery",
        "Effect": "Allow",
        "Principal": {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"},
        "Action": "s3:PutObject",
        "Resource": resource,
    }, {
        "Sid": "AllowRegionalElbAccount",
        "Effect": "Allow",
        "Principal": {"AWS": elb_account_arn},
        "Action": "s3:PutObject",
        "Resource": resource,
    }]
