"""OrthancService component: Orthanc on ECS Fargate, with its storage, credentials, DICOM edge and DNS.

Declares: the DICOM storage bucket (S3 plugin), the generated admin credentials in Secrets
Manager, the Fargate service (:class:`components.fargate.FargateService`) on the shared cluster
behind the shared ALB's default target group, indexed in the shared database server
(:class:`components.platform.Platform`), an optional NLB for DICOM 4242, a Cloud Map name for
callers inside the VPC, and the security groups between them, each naming its source.

The container's configuration comes only from ``labeling.orthanc.config`` (the single generator);
this module maps its secret slots to Secrets Manager ARNs and nothing else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_aws as aws

from components.config import ECR_IMAGE, Retention, TaskSize
from components.fargate import DEPLOYMENT_MAX_PERCENT, FargateService, FargateServiceArgs, port_rule
from components.platform import DB_PORT, DatabaseSettings, DefaultTarget, Platform, generated_password
from components.storage import SecureBucket, SecureBucketArgs
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

TYPE = "dicom-annotate:orthanc:OrthancService"
HTTP_PORT = 8042
DICOM_PORT = 4242
CONTAINER_NAME = "orthanc"
DB_NAME = "orthanc"
DB_USERNAME = "orthanc"

# The ALB's default route: Orthanc. Authentication is on and Orthanc has no unauthenticated route:
# 401 proves the HTTP server answers; the container health check (image probe) covers the rest.
# Jobs live on the node that started them: keep a browser session on one task.
DEFAULT_TARGET = DefaultTarget(
    port=HTTP_PORT,
    health_check=aws.lb.TargetGroupHealthCheckArgs(
        path="/system", protocol="HTTP", port="traffic-port",
        matcher="200,401", interval=30, timeout=5, healthy_threshold=2, unhealthy_threshold=3),
    stickiness=aws.lb.TargetGroupStickinessArgs(type="lb_cookie", enabled=True, cookie_duration=3600))


def database_settings(*, engine_version: str, instance_class: str, allocated_storage_gb: int,
                      max_allocated_storage_gb: int, multi_az: bool, backup_retention_days: int,
                      max_connections: int) -> DatabaseSettings:
    """The shared server, whose first database and master user are Orthanc's index."""
    return DatabaseSettings(
        name=DB_NAME, username=DB_USERNAME, engine_version=engine_version, instance_class=instance_class,
        allocated_storage_gb=allocated_storage_gb, max_allocated_storage_gb=max_allocated_storage_gb,
        multi_az=multi_az, backup_retention_days=backup_retention_days, max_connections=max_connections)


@dataclass
class OrthancAccess:
    """What a caller inside the VPC needs to reach Orthanc (GT Lambdas, the portal)."""

    url: pulumi.Input[str]
    # The admin secret's ARN, never its value: callers read it from Secrets Manager.
    secret_arn: pulumi.Input[str]
    # Attach it to the caller: Orthanc's tasks admit 8042 from it.
    client_security_group_id: pulumi.Input[str]


@dataclass
class OrthancServiceArgs:
    platform: Platform
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[list]
    public_subnet_ids: pulumi.Input[list]
    kms_key_arn: pulumi.Input[str]
    image: str
    size: TaskSize
    region: str
    log_retention_days: int
    prod: bool
    # DICOM 4242 through a public NLB, admitted from these modality CIDRs.
    dicom_nlb: bool = False
    dicom_allowed_cidrs: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    admin_username: str = "admin"
    # Cloud Map private namespace; default "<name without -orthanc>.internal".
    namespace: Optional[str] = None


class OrthancService(pulumi.ComponentResource):
    """Orthanc (orthancteam/orthanc) on Fargate behind the shared ALB, indexed in RDS, stored in S3."""

    def __init__(self, name: str, args: OrthancServiceArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE, name, None, opts)
        self._name = name
        self._args = args
        self._child = pulumi.ResourceOptions(parent=self)
        self._identity = aws.get_caller_identity_output()
        platform = args.platform

        self._security_groups()
        self._storage()
        self._admin_credentials()
        self._dicom_load_balancer()
        self._service_discovery()
        self._service()

        scheme = "https://" if platform.https else "http://"
        self.url = pulumi.Output.concat(scheme, platform.alb_dns_name)
        self.internal_url = pulumi.Output.from_input(f"http://orthanc.{self.namespace_name}:{HTTP_PORT}")
        self.dicom_endpoint = (pulumi.Output.concat(self.nlb.dns_name, f":{DICOM_PORT}") if self.nlb
                               else pulumi.Output.from_input(""))
        self.access = OrthancAccess(url=self.internal_url, secret_arn=self.admin_secret_arn,
                                    client_security_group_id=self.client_security_group_id)
        self.storage_bucket_name = self.storage.name
        self.storage_bucket_arn = self.storage.arn
        self.service_name = self.fargate.service_name
        self.log_group_name = self.fargate.log_group_name
        self.register_outputs({
            "url": self.url,
            "internal_url": self.internal_url,
            "admin_secret_arn": self.admin_secret_arn,
            "dicom_endpoint": self.dicom_endpoint,
            "storage_bucket_name": self.storage_bucket_name,
            "client_security_group_id": self.client_security_group_id,
        })

    # ------------------------------------------------------------------ security groups
    def _security_groups(self) -> None:
        """One SG per role; every ingress rule names its source (an SG or a configured CIDR)."""
        name, args, platform = self._name, self._args, self._args.platform

        def group(suffix: str, description: str) -> aws.ec2.SecurityGroup:
            return aws.ec2.SecurityGroup(f"{name}-{suffix}", description=description, vpc_id=args.vpc_id,
                                         tags=args.tags, opts=self._child)

        self.service_sg = group("service-sg", "Orthanc tasks: 8042 from the ALB and clients, 4242 from the NLB")
        self.client_sg = group("client-sg", "Attach to Lambdas/portal that call Orthanc on 8042")
        self.nlb_sg = group("nlb-sg", "DICOM NLB: 4242 from modality CIDRs") if args.dicom_nlb else None
        alb_sg, db_sg = platform.alb_security_group, platform.db_security_group

        self._egress("alb-to-service", alb_sg, HTTP_PORT, "to Orthanc tasks", target=self.service_sg)
        self._ingress("service-from-alb", self.service_sg, HTTP_PORT, "Orthanc HTTP from the ALB", source=alb_sg)
        self._ingress("service-from-client", self.service_sg, HTTP_PORT,
                      "Orthanc HTTP from Lambdas/portal (client SG)", source=self.client_sg)
        self._egress("service-to-db", self.service_sg, DB_PORT, "to the index database", target=db_sg)
        # Image pulls (Docker Hub via NAT, or an ECR pull-through cache/mirror: orthancImage),
        # Secrets Manager, CloudWatch Logs and S3 are HTTPS endpoints whose addresses are not fixed;
        # egress is 443 only.
        self._egress("service-https", self.service_sg, 443, "HTTPS to AWS APIs and the image registry",
                     cidr="0.0.0.0/0")
        self._egress("client-to-service", self.client_sg, HTTP_PORT, "to Orthanc tasks",
                     target=self.service_sg)
        self._ingress("db-from-service", db_sg, DB_PORT, "PostgreSQL from the Orthanc tasks",
                      source=self.service_sg)

        if self.nlb_sg is not None:
            for i, cidr in enumerate(args.dicom_allowed_cidrs):
                self._ingress(f"nlb-dicom-{i}", self.nlb_sg, DICOM_PORT, f"DICOM from modality {cidr}", cidr=cidr)
                # The NLB preserves the client address, so the tasks see the modality's IP.
                self._ingress(f"service-dicom-{i}", self.service_sg, DICOM_PORT,
                              f"DICOM from modality {cidr} (via NLB)", cidr=cidr)
            self._ingress("service-from-nlb", self.service_sg, DICOM_PORT, "NLB health checks",
                          source=self.nlb_sg)
            self._egress("nlb-to-service", self.nlb_sg, DICOM_PORT, "to Orthanc tasks", target=self.service_sg)

        self.service_security_group_id = self.service_sg.id
        self.client_security_group_id = self.client_sg.id

    def _ingress(self, suffix: str, sg: aws.ec2.SecurityGroup, port: int, description: str, *,
                 source: Optional[aws.ec2.SecurityGroup] = None, cidr: Optional[str] = None) -> None:
        port_rule(aws.vpc.SecurityGroupIngressRule, f"{self._name}-{suffix}", security_group_id=sg.id, port=port,
                  description=description, peer=source.id if source is not None else None, cidr=cidr,
                  tags=self._args.tags, parent=sg)

    def _egress(self, suffix: str, sg: aws.ec2.SecurityGroup, port: int, description: str, *,
                target: Optional[aws.ec2.SecurityGroup] = None, cidr: Optional[str] = None) -> None:
        port_rule(aws.vpc.SecurityGroupEgressRule, f"{self._name}-{suffix}", security_group_id=sg.id, port=port,
                  description=description, peer=target.id if target is not None else None, cidr=cidr,
                  tags=self._args.tags, parent=sg)

    # ------------------------------------------------------------------ storage
    def _storage(self) -> None:
        name, args = self._name, self._args
        # DICOM files: access pattern unknown (hot while labeling, cold after), so Intelligent-Tiering
        # from day 0 rather than a fixed transition.
        self.storage = SecureBucket(
            f"{name}-storage",
            SecureBucketArgs(kms_key_arn=args.kms_key_arn, intelligent_tiering_after_days=0, tags=args.tags),
            opts=self._child)

    # ------------------------------------------------------------------ credentials
    def _admin_credentials(self) -> None:
        name, args = self._name, self._args
        password = generated_password(f"{name}-admin-password", self._child)
        secret = aws.secretsmanager.Secret(
            f"{name}-admin-secret",
            description="Orthanc admin user: username, password, registered_users (ORTHANC__REGISTERED_USERS)",
            kms_key_id=args.kms_key_arn, recovery_window_in_days=Retention.of(args.prod).secret_recovery_days,
            tags=args.tags, opts=self._child)
        username = args.admin_username
        aws.secretsmanager.SecretVersion(
            f"{name}-admin-secret-value",
            secret_id=secret.id,
            secret_string=password.result.apply(lambda pw: json.dumps(admin_secret_document(username, pw))),
            opts=pulumi.ResourceOptions(parent=secret))
        self.admin_secret_arn = secret.arn

    # ------------------------------------------------------------------ DICOM edge
    def _dicom_load_balancer(self) -> None:
        name, args = self._name, self._args
        tags = args.tags
        self.listeners: list[pulumi.Resource] = list(args.platform.listeners)
        self.nlb = None
        self.dicom_target_group = None
        if not args.dicom_nlb:
            return
        self.nlb = aws.lb.LoadBalancer(
            f"{name}-nlb",
            load_balancer_type="network",
            internal=False,
            subnets=args.public_subnet_ids,
            security_groups=[self.nlb_sg.id],
            enable_cross_zone_load_balancing=True,
            enable_deletion_protection=args.platform.deletion_protection,
            tags=tags, opts=self._child)
        self.dicom_target_group = aws.lb.TargetGroup(
            f"{name}-dicom-tg",
            port=DICOM_PORT, protocol="TCP", target_type="ip", vpc_id=args.vpc_id,
            # Orthanc and its audit trail see the modality's address, not the NLB's.
            preserve_client_ip="true",
            deregistration_delay=30,
            health_check=aws.lb.TargetGroupHealthCheckArgs(protocol="TCP", port="traffic-port"),
            tags=tags, opts=self._child)
        self.listeners.append(aws.lb.Listener(
            f"{name}-dicom-listener", load_balancer_arn=self.nlb.arn, port=DICOM_PORT, protocol="TCP",
            default_actions=[aws.lb.ListenerDefaultActionArgs(
                type="forward", target_group_arn=self.dicom_target_group.arn)],
            tags=tags, opts=self._child))

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
        name, args, platform = self._name, self._args, self._args.platform
        image, dicom, region = args.image, args.dicom_nlb, args.region
        index_connections = connection_budget(
            platform.max_connections, args.size.max_tasks * DEPLOYMENT_MAX_PERCENT // 100)
        partition = aws.get_partition_output().partition

        # Bucket name, database host and secret ARNs are known only after creation: the generator
        # (a pure function) runs once they are, and its output becomes the container definitions.
        def containers(log_group: pulumi.Output[str]) -> pulumi.Output[str]:
            return pulumi.Output.all(
                self.storage.name, platform.db_address, platform.db_secret_arn, self.admin_secret_arn,
                log_group).apply(
                lambda v: json.dumps(orthanc_container_definitions(
                    image=image, region=region, bucket=v[0], db_host=v[1], db_secret_arn=v[2],
                    admin_secret_arn=v[3], log_group=v[4], index_connections=index_connections,
                    dicom=dicom)))

        def agent_policy(log_group_arn: pulumi.Output[str]) -> pulumi.Output[str]:
            return pulumi.Output.all(partition, self._identity.account_id, log_group_arn, platform.db_secret_arn,
                                     self.admin_secret_arn, args.kms_key_arn).apply(
                lambda v: json.dumps(execution_policy(region, *v, image=image)))

        load_balancers = [aws.ecs.ServiceLoadBalancerArgs(
            target_group_arn=platform.default_target_group.arn, container_name=CONTAINER_NAME,
            container_port=HTTP_PORT)]
        if self.dicom_target_group is not None:
            load_balancers.append(aws.ecs.ServiceLoadBalancerArgs(
                target_group_arn=self.dicom_target_group.arn, container_name=CONTAINER_NAME,
                container_port=DICOM_PORT))
        self.fargate = FargateService(name, FargateServiceArgs(
            size=args.size, cluster_arn=platform.cluster_arn, cluster_name=platform.cluster_name,
            subnet_ids=args.private_subnet_ids, security_group_ids=[self.service_sg.id],
            container_definitions=containers,
            execution_role_description="ECS agent for Orthanc: pull image, write logs, read its two secrets",
            execution_policy=agent_policy,
            task_role_description="Orthanc container: its DICOM storage bucket and key only",
            task_policy=pulumi.Output.all(self.storage.arn, args.kms_key_arn).apply(
                lambda v: json.dumps(task_policy(*v))),
            load_balancers=load_balancers, log_retention_days=args.log_retention_days,
            kms_key_arn=args.kms_key_arn,
            # Orthanc creates its index schema on first start; give it time before ALB checks count.
            health_check_grace_period_seconds=120,
            service_registry_arn=self.discovery_service.arn,
            # The target groups need their listeners.
            depends_on=self.listeners, tags=args.tags), opts=self._child)


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
