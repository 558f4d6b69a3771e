"""OrthancService component: Orthanc on ECS Fargate with its database, storage, edge and DNS.

Declares: the DICOM storage bucket (S3 plugin), RDS PostgreSQL (index), the generated admin
credentials in Secrets Manager, the ECS cluster/task/service with CPU autoscaling, the public ALB
(HTTPS; HTTP only redirects unless dev's ``allowHttp``), an optional NLB for DICOM 4242, a Cloud Map
name for callers inside the VPC, and the security groups between them, each naming its source.

The container's configuration comes only from ``labeling.orthanc.config`` (the single generator);
this module maps its secret slots to Secrets Manager ARNs and nothing else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.config import ECR_IMAGE, StackConfig
from components.fargate import ecs_cpu_autoscaling, fargate_task_definition
from components.storage import SecureBucket, SecureBucketArgs, encrypted_log_group
from labeling.orthanc.config import (
    POSTGRES_PASSWORD,
    REGISTERED_USERS,
    ContainerEnvironment,
    OrthancSettings,
    PostgresIndex,
    S3Storage,
    connection_budget,
    container_environment,
    registered_users,
)

HTTP_PORT = 8042
DICOM_PORT = 4242
DB_PORT = 5432
CONTAINER_NAME = "orthanc"
DB_NAME = "orthanc"
DB_USERNAME = "orthanc"
# ECS starts the new tasks before stopping the old ones; the connection budget covers that peak.
DEPLOYMENT_MAX_PERCENT = 200
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
RDS_LOG_EXPORTS = ("postgresql", "upgrade")


@dataclass
class OrthancServiceArgs:
    config: StackConfig
    vpc_id: pulumi.Input[str]
    vpc_cidr: pulumi.Input[str]
    public_subnet_ids: pulumi.Input[list]
    private_subnet_ids: pulumi.Input[list]
    kms_key_arn: pulumi.Input[str]
    tags: dict[str, str] = field(default_factory=dict)
    admin_username: str = "admin"
    # Cloud Map private namespace; default "<name without -orthanc>.internal".
    namespace: Optional[str] = None
    # RDS observability; None lets the environment decide (on in prod, off in dev).
    performance_insights: Optional[bool] = None
    monitoring_interval_s: Optional[int] = None


class OrthancService(pulumi.ComponentResource):
    """Orthanc (orthancteam/orthanc) on Fargate behind an ALB, indexed in RDS, stored in S3."""

    def __init__(self, name: str, args: OrthancServiceArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("dicom-annotate:orthanc:OrthancService", name, None, opts)
        self._name = name
        self._args = args
        self._child = pulumi.ResourceOptions(parent=self)
        config = args.config
        prod = config.environment == "prod"
        self._identity = aws.get_caller_identity_output()

        self._security_groups()
        self._storage()
        self._database(prod)
        self._admin_credentials(prod)
        self._logs_and_roles()
        self._load_balancers()
        self._service_discovery()
        self._service()

        scheme = "https://" if config.https else "http://"
        self.url = pulumi.Output.concat(scheme, self.alb.dns_name)
        self.alb_dns_name = self.alb.dns_name
        self.internal_url = pulumi.Output.from_input(f"http://orthanc.{self.namespace_name}:{HTTP_PORT}")
        self.dicom_endpoint = (pulumi.Output.concat(self.nlb.dns_name, f":{DICOM_PORT}") if self.nlb
                               else pulumi.Output.from_input(""))
        self.storage_bucket_name = self.storage.name
        self.storage_bucket_arn = self.storage.arn
        self.db_address = self.db.address
        self.cluster_name = self.cluster.name
        self.cluster_arn = self.cluster.arn
        self.service_name = self.service.name
        self.alb_arn = self.alb.arn
        self.https_listener_arn = self.front_listener.arn
        self.log_group_name = self.log_group.name
        self.register_outputs({
            "url": self.url,
            "internal_url": self.internal_url,
            "admin_secret_arn": self.admin_secret_arn,
            "dicom_endpoint": self.dicom_endpoint,
            "storage_bucket_name": self.storage_bucket_name,
            "db_address": self.db_address,
            "db_secret_arn": self.db_secret_arn,
            "cluster_name": self.cluster_name,
            "client_security_group_id": self.client_security_group_id,
            "db_security_group_id": self.db_security_group_id,
        })

    # ------------------------------------------------------------------ security groups
    def _security_groups(self) -> None:
        """One SG per role; every ingress rule names its source (an SG or a configured CIDR)."""
        name, args, config = self._name, self._args, self._args.config

        def group(suffix: str, description: str) -> aws.ec2.SecurityGroup:
            return aws.ec2.SecurityGroup(f"{name}-{suffix}", description=description, vpc_id=args.vpc_id,
                                         tags=args.tags, opts=self._child)

        self.alb_sg = group("alb-sg", "Orthanc ALB: HTTPS, and HTTP that only redirects, from the configured CIDRs"
                            if config.https else
                            "Orthanc ALB: plain HTTP (allowHttp, dev only) from the configured CIDRs")
        self.service_sg = group("service-sg", "Orthanc tasks: 8042 from the ALB and clients, 4242 from the NLB")
        self.client_sg = group("client-sg", "Attach to Lambdas/portal that call Orthanc on 8042")
        self.db_sg = group("db-sg", "Orthanc index database: 5432 from the Orthanc tasks only")
        self.nlb_sg = group("nlb-sg", "DICOM NLB: 4242 from modality CIDRs") if config.dicom_nlb else None

        edge_ports = [443, 80] if config.https else [80]
        for port in edge_ports:
            for i, cidr in enumerate(config.alb_ingress_cidrs):
                purpose = "HTTPS" if port == 443 else ("HTTP redirect" if config.https else "HTTP (allowHttp)")
                self._ingress(f"alb-{port}-{i}", self.alb_sg, port, f"{purpose} from {cidr}", cidr=cidr)
        self._egress("alb-to-service", self.alb_sg, HTTP_PORT, "to Orthanc tasks", target=self.service_sg)

        self._ingress("service-from-alb", self.service_sg, HTTP_PORT, "Orthanc HTTP from the ALB",
                      source=self.alb_sg)
        self._ingress("service-from-client", self.service_sg, HTTP_PORT,
                      "Orthanc HTTP from Lambdas/portal (client SG)", source=self.client_sg)
        self._egress("service-to-db", self.service_sg, DB_PORT, "to the index database", target=self.db_sg)
        # Image pulls (Docker Hub via NAT, or an ECR pull-through cache/mirror: orthancImage),
        # Secrets Manager, CloudWatch Logs and S3 are HTTPS endpoints whose addresses are not fixed;
        # egress is 443 only.
        self._egress("service-https", self.service_sg, 443, "HTTPS to AWS APIs and the image registry",
                     cidr="0.0.0.0/0")

        self._egress("client-to-service", self.client_sg, HTTP_PORT, "to Orthanc tasks",
                     target=self.service_sg)
        self._ingress("db-from-service", self.db_sg, DB_PORT, "PostgreSQL from the Orthanc tasks",
                      source=self.service_sg)

        if self.nlb_sg is not None:
            for i, cidr in enumerate(config.dicom_allowed_cidrs):
                self._ingress(f"nlb-dicom-{i}", self.nlb_sg, DICOM_PORT, f"DICOM from modality {cidr}", cidr=cidr)
                # The NLB preserves the client address, so the tasks see the modality's IP.
                self._ingress(f"service-dicom-{i}", self.service_sg, DICOM_PORT,
                              f"DICOM from modality {cidr} (via NLB)", cidr=cidr)
            self._ingress("service-from-nlb", self.service_sg, DICOM_PORT, "NLB health checks",
                          source=self.nlb_sg)
            self._egress("nlb-to-service", self.nlb_sg, DICOM_PORT, "to Orthanc tasks", target=self.service_sg)

        self.alb_security_group_id = self.alb_sg.id
        self.service_security_group_id = self.service_sg.id
        self.client_security_group_id = self.client_sg.id
        self.db_security_group_id = self.db_sg.id

    def _ingress(self, suffix: str, sg: aws.ec2.SecurityGroup, port: int, description: str, *,
                 source: Optional[aws.ec2.SecurityGroup] = None, cidr: Optional[str] = None) -> None:
        aws.vpc.SecurityGroupIngressRule(
            f"{self._name}-{suffix}", security_group_id=sg.id, description=description,
            ip_protocol="tcp", from_port=port, to_port=port,
            referenced_security_group_id=source.id if source is not None else None, cidr_ipv4=cidr,
            tags=self._args.tags, opts=pulumi.ResourceOptions(parent=sg))

    def _egress(self, suffix: str, sg: aws.ec2.SecurityGroup, port: int, description: str, *,
                target: Optional[aws.ec2.SecurityGroup] = None, cidr: Optional[str] = None) -> None:
        aws.vpc.SecurityGroupEgressRule(
            f"{self._name}-{suffix}", security_group_id=sg.id, description=description,
            ip_protocol="tcp", from_port=port, to_port=port,
            referenced_security_group_id=target.id if target is not None else None, cidr_ipv4=cidr,
            tags=self._args.tags, opts=pulumi.ResourceOptions(parent=sg))

    # ------------------------------------------------------------------ storage
    def _storage(self) -> None:
        name, args = self._name, self._args
        # DICOM files: access pattern unknown (hot while labeling, cold after), so Intelligent-Tiering
        # from day 0 rather than a fixed transition.
        self.storage = SecureBucket(
            f"{name}-storage",
            SecureBucketArgs(kms_key_arn=args.kms_key_arn, intelligent_tiering_after_days=0, tags=args.tags),
            opts=self._child)

    # ------------------------------------------------------------------ database
    def _database(self, prod: bool) -> None:
        name, args, config = self._name, self._args, self._args.config
        tags = args.tags
        major = config.db_engine_version.split(".")[0]
        # Explicit identifier so the exported log groups below can be created first, with retention
        # and KMS (RDS would otherwise create them itself, never expiring). A change that forces
        # replacement then fails on the name instead of silently creating an empty database.
        identifier = f"{name}-db"
        subnet_group = aws.rds.SubnetGroup(
            f"{name}-db-subnets", description="Orthanc index: private subnets", subnet_ids=args.private_subnet_ids,
            tags=tags, opts=self._child)
        parameter_group = aws.rds.ParameterGroup(
            f"{name}-db-params",
            family=f"postgres{major}",
            description="Orthanc index: TLS required, max_connections pinned to the stack's budget",
            parameters=[
                aws.rds.ParameterGroupParameterArgs(name="rds.force_ssl", value="1"),
                # Static parameter: the number every connection budget is computed from
                # (components/config.py rds_max_connections), not RDS's memory-dependent default.
                aws.rds.ParameterGroupParameterArgs(name="max_connections", value=str(config.db_max_connections),
                                                    apply_method="pending-reboot"),
            ],
            tags=tags, opts=self._child)
        log_groups = [encrypted_log_group(
            f"{name}-db-{export}", f"/aws/rds/instance/{identifier}/{export}",
            retention_days=config.log_retention_days, kms_key_arn=args.kms_key_arn, tags=tags, opts=self._child)
            for export in RDS_LOG_EXPORTS]

        performance_insights = prod if args.performance_insights is None else args.performance_insights
        monitoring_interval = (60 if prod else 0) if args.monitoring_interval_s is None else args.monitoring_interval_s
        monitoring_role_arn = None
        if monitoring_interval:
            partition = aws.get_partition_output().partition
            monitoring_role = aws.iam.Role(
                f"{name}-db-monitoring-role",
                description="RDS enhanced monitoring for the Orthanc index",
                assume_role_policy=self._identity.account_id.apply(
                    lambda account: json.dumps(_service_trust("monitoring.rds.amazonaws.com", account))),
                tags=tags, opts=self._child)
            aws.iam.RolePolicyAttachment(
                f"{name}-db-monitoring-policy",
                role=monitoring_role.name,
                policy_arn=pulumi.Output.concat(
                    "arn:", partition, ":iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"),
                opts=pulumi.ResourceOptions(parent=monitoring_role))
            monitoring_role_arn = monitoring_role.arn

        # A generated password in our own secret, not RDS-managed: RDS rotates a managed password
        # every 7 days while Orthanc reads it only at task start, so its reconnects would fail.
        # Rotate deliberately with `pulumi up --replace <this RandomPassword's URN>` (tasks restart).
        db_password = self._generated_password("db-password")
        db_secret = self._secret("db-secret", "Orthanc index database: username, password (ECS injects password)",
                                 prod)

        self.db = aws.rds.Instance(
            f"{name}-db",
            identifier=identifier,
            engine="postgres",
            engine_version=config.db_engine_version,
            instance_class=config.db_instance_class,
            allocated_storage=config.db_allocated_storage_gb,
            max_allocated_storage=config.db_max_allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=args.kms_key_arn,
            db_name=DB_NAME,
            # Orthanc connects as the master user; the password is a Pulumi secret (encrypted in
            # state) and lives in Secrets Manager under our key.
            username=DB_USERNAME,
            password=db_password.result,
            port=DB_PORT,
            db_subnet_group_name=subnet_group.name,
            vpc_security_group_ids=[self.db_sg.id],
            parameter_group_name=parameter_group.name,
            publicly_accessible=False,
            multi_az=config.db_multi_az,
            deletion_protection=config.deletion_protection,
            backup_retention_period=config.db_backup_retention_days,
            backup_window="03:00-04:00",
            maintenance_window="sun:04:30-sun:05:30",
            copy_tags_to_snapshot=True,
            delete_automated_backups=not prod,
            skip_final_snapshot=not prod,
            final_snapshot_identifier=f"{name}-final" if prod else None,
            auto_minor_version_upgrade=True,
            allow_major_version_upgrade=False,
            apply_immediately=not prod,
            enabled_cloudwatch_logs_exports=list(RDS_LOG_EXPORTS),
            performance_insights_enabled=performance_insights,
            performance_insights_kms_key_id=args.kms_key_arn if performance_insights else None,
            performance_insights_retention_period=7 if performance_insights else None,
            monitoring_interval=monitoring_interval,
            monitoring_role_arn=monitoring_role_arn,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=log_groups))
        # Exposed so that a deploy-time reader (the portal's DB role function) waits for the value.
        self.db_secret_version = aws.secretsmanager.SecretVersion(
            f"{name}-db-secret-value",
            secret_id=db_secret.id,
            secret_string=pulumi.Output.all(db_password.result, self.db.address).apply(
                lambda v: json.dumps({"engine": "postgres", "username": DB_USERNAME, "password": v[0],
                                      "host": v[1], "port": DB_PORT, "dbname": DB_NAME})),
            opts=pulumi.ResourceOptions(parent=db_secret))
        self.db_secret_arn = db_secret.arn

    # ------------------------------------------------------------------ credentials
    def _generated_password(self, suffix: str) -> random.RandomPassword:
        # Letters guaranteed: the image parses env values as JSON, an all-digit password would
        # become a number. No special characters: they travel inside JSON and HTTP basic auth.
        return random.RandomPassword(
            f"{self._name}-{suffix}", length=32, special=False, min_upper=2, min_lower=2, min_numeric=2,
            opts=self._child)

    def _secret(self, suffix: str, description: str, prod: bool) -> aws.secretsmanager.Secret:
        return aws.secretsmanager.Secret(
            f"{self._name}-{suffix}", description=description, kms_key_id=self._args.kms_key_arn,
            recovery_window_in_days=30 if prod else 7, tags=self._args.tags, opts=self._child)

    def _admin_credentials(self, prod: bool) -> None:
        name, args = self._name, self._args
        password = self._generated_password("admin-password")
        secret = self._secret(
            "admin-secret",
            "Orthanc admin user: username, password, registered_users (ORTHANC__REGISTERED_USERS)", prod)
        username = args.admin_username
        aws.secretsmanager.SecretVersion(
            f"{name}-admin-secret-value",
            secret_id=secret.id,
            secret_string=password.result.apply(lambda pw: json.dumps(admin_secret_document(username, pw))),
            opts=pulumi.ResourceOptions(parent=secret))
        self.admin_secret_arn = secret.arn

    # ------------------------------------------------------------------ logs, cluster, roles
    def _logs_and_roles(self) -> None:
        name, args, config = self._name, self._args, self._args.config
        tags = args.tags
        self.log_group = encrypted_log_group(
            f"{name}-logs", f"/ecs/{name}", retention_days=config.log_retention_days,
            kms_key_arn=args.kms_key_arn, tags=tags, opts=self._child)
        self.cluster = aws.ecs.Cluster(
            f"{name}-cluster",
            settings=[aws.ecs.ClusterSettingArgs(name="containerInsights", value="enabled")],
            tags=tags, opts=self._child)

        trust = self._identity.account_id.apply(
            lambda account: json.dumps(_service_trust("ecs-tasks.amazonaws.com", account)))
        self.execution_role = aws.iam.Role(
            f"{name}-execution-role", description="ECS agent for Orthanc: pull image, write logs, read its two secrets",
            assume_role_policy=trust, tags=tags, opts=self._child)
        aws.iam.RolePolicy(
            f"{name}-execution-policy",
            role=self.execution_role.id,
            policy=pulumi.Output.all(aws.get_partition_output().partition, self._identity.account_id,
                                     self.log_group.arn, self.db_secret_arn, self.admin_secret_arn,
                                     args.kms_key_arn).apply(
                lambda v: json.dumps(execution_policy(config.region, *v, image=config.orthanc_image))),
            opts=pulumi.ResourceOptions(parent=self.execution_role))

        self.task_role = aws.iam.Role(
            f"{name}-task-role", description="Orthanc container: its DICOM storage bucket and key only",
            assume_role_policy=trust, tags=tags, opts=self._child)
        aws.iam.RolePolicy(
            f"{name}-task-policy",
            role=self.task_role.id,
            policy=pulumi.Output.all(self.storage.arn, args.kms_key_arn).apply(
                lambda v: json.dumps(task_policy(*v))),
            opts=pulumi.ResourceOptions(parent=self.task_role))

    # ------------------------------------------------------------------ edge
    def _load_balancers(self) -> None:
        name, args, config = self._name, self._args, self._args.config
        tags = args.tags
        # ELB log delivery writes with SSE-S3 only (a KMS-encrypted bucket rejects it).
        self.alb_logs = SecureBucket(
            f"{name}-alb-logs",
            SecureBucketArgs(
                kms_key_arn=None,
                expire_after_days=config.log_retention_days,
                own_policy_statements=lambda arn: pulumi.Output.all(
                    arn, self._identity.account_id, aws.elb.get_service_account_output().arn).apply(
                    lambda v: alb_log_delivery_statements(v[0], v[1], v[2])),
                tags=tags),
            opts=self._child)

        self.alb = aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            internal=False,
            subnets=args.public_subnet_ids,
            security_groups=[self.alb_sg.id],
            drop_invalid_header_fields=True,
            # Large DICOM uploads/downloads (STOW/WADO) outlast the 60 s default.
            idle_timeout=300,
            enable_deletion_protection=config.deletion_protection,
            access_logs=aws.lb.LoadBalancerAccessLogsArgs(bucket=self.alb_logs.id, prefix="alb", enabled=True),
            tags=tags,
            # ELB checks it may write to the bucket when logging is switched on.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.alb_logs]))
        self.target_group = aws.lb.TargetGroup(
            f"{name}-tg",
            port=HTTP_PORT, protocol="HTTP", target_type="ip", vpc_id=args.vpc_id,
            deregistration_delay=30,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                path="/system", protocol="HTTP", port="traffic-port",
                # Authentication is on and Orthanc has no unauthenticated route: 401 proves the HTTP
                # server answers; the container health check (image probe) covers the rest.
                matcher="200,401", interval=30, timeout=5, healthy_threshold=2, unhealthy_threshold=3),
            # Jobs live on the node that started them: keep a browser session on one task.
            stickiness=aws.lb.TargetGroupStickinessArgs(type="lb_cookie", enabled=True, cookie_duration=3600),
            tags=tags, opts=self._child)
        forward = [aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=self.target_group.arn)]
        if config.https:
            self.front_listener = aws.lb.Listener(
                f"{name}-https-listener", load_balancer_arn=self.alb.arn, port=443, protocol="HTTPS",
                certificate_arn=config.certificate_arn, ssl_policy=TLS_POLICY, default_actions=forward,
                tags=tags, opts=self._child)
            self.http_listener = aws.lb.Listener(
                f"{name}-http-listener", load_balancer_arn=self.alb.arn, port=80, protocol="HTTP",
                default_actions=[aws.lb.ListenerDefaultActionArgs(
                    type="redirect",
                    redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                        port="443", protocol="HTTPS", status_code="HTTP_301"))],
                tags=tags, opts=self._child)
        else:
            # Only reachable with allowHttp (dev, no certificate); config validation and the plan's
            # warning guard it.
            self.http_listener = aws.lb.Listener(
                f"{name}-http-listener", load_balancer_arn=self.alb.arn, port=80, protocol="HTTP",
                default_actions=forward, tags=tags, opts=self._child)
            self.front_listener = self.http_listener
        listeners: list[pulumi.Resource] = [self.front_listener, self.http_listener]

        self.nlb = None
        self.dicom_target_group = None
        if config.dicom_nlb:
            self.nlb = aws.lb.LoadBalancer(
                f"{name}-nlb",
                load_balancer_type="network",
                internal=False,
                subnets=args.public_subnet_ids,
                security_groups=[self.nlb_sg.id],
                enable_cross_zone_load_balancing=True,
                enable_deletion_protection=config.deletion_protection,
                tags=tags, opts=self._child)
            self.dicom_target_group = aws.lb.TargetGroup(
                f"{name}-dicom-tg",
                port=DICOM_PORT, protocol="TCP", target_type="ip", vpc_id=args.vpc_id,
                # Orthanc and its audit trail see the modality's address, not the NLB's.
                preserve_client_ip="true",
                deregistration_delay=30,
                health_check=aws.lb.TargetGroupHealthCheckArgs(protocol="TCP", port="traffic-port"),
                tags=tags, opts=self._child)
            listeners.append(aws.lb.Listener(
                f"{name}-dicom-listener", load_balancer_arn=self.nlb.arn, port=DICOM_PORT, protocol="TCP",
                default_actions=[aws.lb.ListenerDefaultActionArgs(
                    type="forward", target_group_arn=self.dicom_target_group.arn)],
                tags=tags, opts=self._child))
        self._listeners = listeners

    # ------------------------------------------------------------------ internal DNS
    def _service_discovery(self) -> None:
        name, args = self._name, self._args
        self.namespace_name = args.namespace or f"{name.removesuffix('-orthanc')}.internal"
        self.namespace = aws.servicediscovery.PrivateDnsNamespace(
            f"{name}-ns", name=self.namespace_name, vpc=args.vpc_id,
            description="Private names for Lambdas and the portal to reach Orthanc without the internet",
            tags=args.tags, opts=self._child)
        self.discovery_service = aws.servicediscovery.Service(
            f"{name}-discovery",
            name="orthanc",
            dns_config=aws.servicediscovery.ServiceDnsConfigArgs(
                namespace_id=self.namespace.id,
                dns_records=[aws.servicediscovery.ServiceDnsConfigDnsRecordArgs(ttl=10, type="A")],
                routing_policy="MULTIVALUE"),
            tags=args.tags, opts=self._child)
        self.namespace_id = self.namespace.id

    # ------------------------------------------------------------------ task and service
    def _service(self) -> None:
        name, args, config = self._name, self._args, self._args.config
        tags = args.tags
        index_connections = connection_budget(
            config.db_max_connections, config.max_tasks * DEPLOYMENT_MAX_PERCENT // 100)
        image, dicom = config.orthanc_image, config.dicom_nlb
        region = config.region
        # Bucket name, database host and secret ARNs are known only after creation: the generator
        # (a pure function) runs once they are, and its output becomes the container definitions.
        container_definitions = pulumi.Output.all(
            self.storage.name, self.db.address, self.db_secret_arn, self.admin_secret_arn,
            self.log_group.name).apply(
            lambda v: json.dumps(orthanc_container_definitions(
                image=image, region=region, bucket=v[0], db_host=v[1], db_secret_arn=v[2],
                admin_secret_arn=v[3], log_group=v[4], index_connections=index_connections,
                dicom=dicom)))
        self.task_definition = fargate_task_definition(
            name, cpu=config.orthanc_cpu, memory=config.orthanc_memory,
            execution_role_arn=self.execution_role.arn, task_role_arn=self.task_role.arn,
            container_definitions=container_definitions, tags=tags, parent=self)

        load_balancers = [aws.ecs.ServiceLoadBalancerArgs(
            target_group_arn=self.target_group.arn, container_name=CONTAINER_NAME, container_port=HTTP_PORT)]
        if self.dicom_target_group is not None:
            load_balancers.append(aws.ecs.ServiceLoadBalancerArgs(
                target_group_arn=self.dicom_target_group.arn, container_name=CONTAINER_NAME,
                container_port=DICOM_PORT))
        self.service = aws.ecs.Service(
            f"{name}-service",
            cluster=self.cluster.arn,
            task_definition=self.task_definition.arn,
            desired_count=config.min_tasks,
            launch_type="FARGATE",
            platform_version="LATEST",
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=args.private_subnet_ids, security_groups=[self.service_sg.id], assign_public_ip=False),
            load_balancers=load_balancers,
            service_registries=aws.ecs.ServiceServiceRegistriesArgs(registry_arn=self.discovery_service.arn),
            deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(enable=True, rollback=True),
            deployment_maximum_percent=DEPLOYMENT_MAX_PERCENT,
            deployment_minimum_healthy_percent=100,
            # Orthanc creates its index schema on first start; give it time before ALB checks count.
            health_check_grace_period_seconds=120,
            enable_execute_command=False,
            enable_ecs_managed_tags=True,
            propagate_tags="SERVICE",
            wait_for_steady_state=config.wait_for_steady_state,
            tags=tags,
            # Autoscaling owns the task count after creation; the target group needs its listener.
            opts=pulumi.ResourceOptions(parent=self, depends_on=self._listeners,
                                        ignore_changes=["desired_count"]))

        ecs_cpu_autoscaling(name, cluster_name=self.cluster.name, service=self.service, min_tasks=config.min_tasks,
                            max_tasks=config.max_tasks, cpu_target_percent=config.cpu_target_percent,
                            tags=tags, parent=self)


# ---------------------------------------------------------------------- documents (pure functions)
def admin_secret_document(username: str, password: str) -> dict[str, str]:
    """The admin secret: credentials for callers, and the ORTHANC__REGISTERED_USERS value."""
    return {"username": username, "password": password,
            "registered_users": json.dumps(registered_users(username, password))}


def orthanc_settings(*, bucket: str, region: str, db_host: str, index_connections: int,
                     dicom: bool) -> OrthancSettings:
    """The typed settings the generator turns into the container's configuration."""
    return OrthancSettings(
        index=PostgresIndex(host=db_host, port=DB_PORT, database=DB_NAME, username=DB_USERNAME,
                            ssl=True, index_connections=index_connections),
        storage=S3Storage(bucket=bucket, region=region),
        # DICOM listens only when the NLB exposes it.
        dicom_server=dicom,
        dicom_port=DICOM_PORT,
        http_port=HTTP_PORT,
    )


def orthanc_container_definitions(*, image: str, region: str, bucket: str, db_host: str,
                                  db_secret_arn: str, admin_secret_arn: str, log_group: str,
                                  index_connections: int, dicom: bool) -> list[dict[str, Any]]:
    """ECS container definitions: environment and secret names from the Orthanc config generator."""
    env: ContainerEnvironment = container_environment(orthanc_settings(
        bucket=bucket, region=region, db_host=db_host, index_connections=index_connections, dicom=dicom))
    # Secret slot → Secrets Manager "arn:json-key::" reference that ECS resolves at task start.
    value_from = {
        POSTGRES_PASSWORD: f"{db_secret_arn}:password::",
        REGISTERED_USERS: f"{admin_secret_arn}:registered_users::",
    }
    ports = [HTTP_PORT] + ([DICOM_PORT] if dicom else [])
    return [{
        "name": CONTAINER_NAME,
        "image": image,
        "essential": True,
        "portMappings": [{"containerPort": p, "hostPort": p, "protocol": "tcp"} for p in ports],
        "environment": [{"name": k, "value": v} for k, v in sorted(env.environment.items())],
        "secrets": [{"name": var, "valueFrom": value_from[slot]} for var, slot in sorted(env.secrets.items())],
        "healthCheck": {
            "command": ["CMD-SHELL", "/probes/test-aliveness.py || exit 1"],
            "interval": 30, "timeout": 10, "retries": 3, "startPeriod": 60,
        },
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {"awslogs-group": log_group, "awslogs-region": region,
                        "awslogs-stream-prefix": CONTAINER_NAME},
        },
        # The image's entrypoint writes the generated orthanc.json at start, so the root filesystem
        # cannot be read-only.
        "readonlyRootFilesystem": False,
        "privileged": False,
        "stopTimeout": 30,
    }]


def _service_trust(service: str, account_id: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
    }]}


def execution_policy(region: str, partition: str, account_id: str, log_group_arn: str, db_secret_arn: str,
                     admin_secret_arn: str, kms_key_arn: str, image: str = "") -> dict[str, Any]:
    """ECS agent: its log group, its two secrets, and - for an ECR image - that repository only.

    A Docker Hub image needs no ECR grant. An ECR pull-through cache creates the repository and
    imports the upstream image on the first pull, under the puller's role
    (https://docs.aws.amazon.com/AmazonECR/latest/userguide/pull-through-cache-iam.html).
    """
    statements: list[dict[str, Any]] = []
    mirror = ECR_IMAGE.fullmatch(image)
    if mirror:
        repository = f"arn:{partition}:ecr:{region}:{mirror['account']}:repository/{mirror['repository']}"
        statements += [
            # GetAuthorizationToken has no resource-level permission.
            {"Sid": "EcrAuth", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
            {"Sid": "EcrPull", "Effect": "Allow", "Resource": repository,
             "Action": ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage",
                        "ecr:BatchImportUpstreamImage", "ecr:CreateRepository"]},
        ]
    return {"Version": "2012-10-17", "Statement": statements + [
        {"Sid": "Logs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"{log_group_arn}:*"},
        {"Sid": "Secrets", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
         "Resource": [db_secret_arn, admin_secret_arn]},
        {"Sid": "SecretsKey", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": kms_key_arn},
    ]}


def task_policy(bucket_arn: str, kms_key_arn: str) -> dict[str, Any]:
    """Orthanc's S3 plugin: objects of its storage bucket, encrypted with the data key."""
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "ListStorage", "Effect": "Allow",
         "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
         "Resource": bucket_arn},
        {"Sid": "ObjectsInStorage", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts"],
         "Resource": f"{bucket_arn}/*"},
        {"Sid": "StorageKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
         "Resource": kms_key_arn},
    ]}


def alb_log_delivery_statements(bucket_arn: str, account_id: str,
                                elb_account_arn: str) -> list[dict[str, Any]]:
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
