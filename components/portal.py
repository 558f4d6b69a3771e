"""Portal component: the labeling portal (``labeling/portal``) on ECS Fargate behind the shared ALB.

Declares, on the :class:`components.platform.Platform` it shares with Orthanc (cluster, ALB, database
server), reaching Orthanc as its other clients do (:class:`components.orthanc.OrthancAccess`):

- an ECR repository and the image built from ``portal.Dockerfile`` at ``pulumi up`` (awsx), which
  runs ``python -m labeling portal migrate && python -m labeling portal serve`` as a non-root user;
- a Cognito user pool (admin-created users only, strong password policy, MFA optional in dev and
  required in prod, threat protection enforced), its hosted sign-in domain, an app client with a
  secret for the ALB, and the groups ``admin``/``annotator``/``reviewer`` the portal maps to roles;
- a target group (health check ``/portal/healthz``) and one rule on the HTTPS listener: path
  ``/portal`` and ``/portal/*`` → ``authenticate-cognito`` first, then forward. AWS offers the
  authenticate actions on HTTPS listeners only, so the stack config refuses the portal without a
  certificate (components/config.py);
- the Fargate service (:class:`components.fargate.FargateService`) in the private subnets (no public IP) with its own security group (8000 from
  the ALB's group only; out: 5432 to the database group, HTTPS to AWS APIs and the ALB key
  endpoint) plus the Orthanc client group (8042 to Orthanc), CPU autoscaling, an encrypted log group;
- a generated session secret in Secrets Manager (the project key); ECS injects it and the database
  password as ``secrets`` — no secret value is in the task's environment, config or outputs;
- least-privilege roles: the execution role pulls this repository's image, writes this log group and
  reads those two secrets; the task role reads the Orthanc and de-identification salt secrets,
  writes exports under ``portal-exports/`` of the annotation bucket (KMS) and lists a user's Cognito groups.

Database credentials: the portal has its own PostgreSQL role (``portal_app``) and database
(``portal``) on the Orthanc database server, with rights on that database only and none on the
Orthanc index. Pulumi cannot reach the private RDS instance, so a small Lambda inside the VPC
(``lambda_src/portal_db_role``) makes them at deploy time: an ``aws.lambda_.Invocation`` runs it
on create and again whenever the role's password changes. It connects as the master user (the
Orthanc database secret, which only it reads); the role's password is generated into the portal's
own secret, the only database secret the portal's tasks receive.

The container's environment names come from :mod:`labeling.portal.names` (``PORTAL_*``, ``ORTHANC_*``,
``DEIDENTIFY_SALT_SECRET_ARN``), the module the portal's settings read them with;
:func:`portal_container_definitions` is the one place they are set.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pulumi
import pulumi_aws as aws
import pulumi_awsx as awsx
import pulumi_random as random

from components.config import ConfigError, Retention, StackConfig, TaskSize
from components.fargate import DEPLOYMENT_MAX_PERCENT, FargateService, FargateServiceArgs, port_rule
from components.iam import service_role_trust, vpc_lambda_statements
from components.names import DEPLOY_TIME_TAG
from components.orthanc import OrthancAccess
from components.packaging import LAMBDA_RUNTIME, ROOT, lambda_archive
from components.platform import DB_PORT, Platform, generated_password
from components.storage import encrypted_log_group
from labeling.orthanc.config import DEFAULT_RESERVED_CONNECTIONS, connection_budget
from labeling.portal import names as N
from labeling.portal.names import EXPORT_PREFIX  # where the portal writes exports (the task role's grant)
# labeling/portal/db.py opens up to pool_size + this many connections per task (one worker each).
from labeling.portal.names import DB_MAX_OVERFLOW as PORTAL_MAX_OVERFLOW

PORTAL_PORT = 8000
DB_NAME = "portal"
DB_ROLE = "portal_app"
# Databases the portal role must not open (the Orthanc index; components/orthanc.py DB_NAME).
PROTECTED_DATABASES = ("orthanc",)
DB_ROLE_FUNCTION = ROOT / "lambda_src" / "portal_db_role" / "handler.py"
CONTAINER_NAME = "portal"
ROOT_PATH = "/portal"
HEALTH_PATH = f"{ROOT_PATH}/healthz"
PATH_PATTERNS = (ROOT_PATH, f"{ROOT_PATH}/*")
LISTENER_RULE_PRIORITY = 100
GROUPS = {"admin": "Creates jobs, invites annotators, exports", "annotator": "Labels assigned items",
          "reviewer": "Resolves low-agreement items"}
PORTAL_MAX_POOL = 10
CACHE_DIR = "/tmp/portal-cache"
SESSION_TIMEOUT_S = 8 * 3600
SESSION_COOKIE = "dicom-annotate-portal"
IMAGE_PLATFORM = "linux/amd64"
IMAGES_KEPT = 10


@dataclass
class PortalArgs:
    platform: Platform
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[list]
    kms_key_arn: pulumi.Input[str]
    orthanc: OrthancAccess
    # Ground Truth's de-identification salt (the same keyed UIDs as the pre-label Lambda).
    salt_secret_arn: pulumi.Input[str]
    annotation_bucket_name: pulumi.Input[str]
    annotation_bucket_arn: pulumi.Input[str]
    # The Lambda layer with psycopg (Ground Truth's dependency layer, make lambda-layer).
    dependency_layer_arn: pulumi.Input[str]
    size: TaskSize
    region: str
    prod: bool
    log_retention_days: int
    deidentify: bool
    # The host users browse (covered by the certificate); None: the ALB's own name.
    domain: Optional[str]
    mfa_required: bool
    # Hosted sign-in domain prefix; None: "<name>-<account>".
    cognito_domain_prefix: Optional[str]
    # portal_db_pool_size(): the portal's share of the server's connections.
    db_pool_size: int
    tags: dict[str, str] = field(default_factory=dict)
    dockerfile: Path = ROOT / "portal.Dockerfile"
    context: Path = ROOT


class Portal(pulumi.ComponentResource):
    """The labeling portal: image, Cognito sign-in at the ALB, Fargate service, roles, secrets."""

    def __init__(self, name: str, args: PortalArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("dicom-annotate:portal:Portal", name, None, opts)
        if not args.platform.https:
            # The stack config refuses this too; a component used elsewhere must not build a rule AWS rejects.
            raise ValueError(f"{name}: the portal needs the HTTPS listener (ALB authenticate actions are HTTPS-only)")
        self._name, self._args = name, args
        self._child = pulumi.ResourceOptions(parent=self)
        self._prod = args.prod
        identity = aws.get_caller_identity_output()
        self._account = identity.account_id
        self._partition = aws.get_partition_output().partition
        host = (pulumi.Output.from_input(args.domain) if args.domain
                else pulumi.Output.from_input(args.platform.alb_dns_name))

        self._security_group()
        self._image()
        self._sign_in(host)
        self._database_role()
        self._session_secret()
        self._service()

        self.url = pulumi.Output.concat("https://", host, f"{ROOT_PATH}/")
        self.user_pool_id = self.user_pool.id
        self.user_pool_client_id = self.client.id
        self.sign_in_domain = pulumi.Output.concat(
            self.domain.domain, ".auth.", args.region, ".amazoncognito.com")
        self.service_name = self.fargate.service_name
        self.repository_url = self.repository.repository_url
        self.security_group_id = self.sg.id
        self.db_secret_arn = self.db_secret.arn
        self.register_outputs({
            "url": self.url, "user_pool_id": self.user_pool_id, "user_pool_client_id": self.user_pool_client_id,
            "sign_in_domain": self.sign_in_domain, "service_name": self.service_name,
            "repository_url": self.repository_url,
        })

    # ------------------------------------------------------------------ network
    def _security_group(self) -> None:
        name, args = self._name, self._args
        self.sg = aws.ec2.SecurityGroup(
            f"{name}-sg", vpc_id=args.vpc_id, tags=args.tags, opts=self._child,
            description="Portal tasks: 8000 from the ALB only; out to the database and HTTPS")

        def rule(kind, suffix: str, owner: pulumi.Input[str], port: int, description: str, *,
                 peer: Optional[pulumi.Input[str]] = None, cidr: Optional[str] = None) -> None:
            port_rule(kind, f"{name}-{suffix}", security_group_id=owner, port=port, description=description,
                      peer=peer, cidr=cidr, tags=args.tags, parent=self.sg)

        ingress, egress = aws.vpc.SecurityGroupIngressRule, aws.vpc.SecurityGroupEgressRule
        alb_sg, db_sg = args.platform.alb_security_group_id, args.platform.db_security_group_id
        rule(ingress, "from-alb", self.sg.id, PORTAL_PORT, "Portal HTTP from the ALB", peer=alb_sg)
        rule(egress, "alb-to-portal", alb_sg, PORTAL_PORT, "ALB to the portal tasks", peer=self.sg.id)
        # authenticate-cognito: the ALB itself calls the Cognito token and user-info endpoints.
        rule(egress, "alb-to-cognito", alb_sg, 443,
             "ALB to the Cognito token/userinfo endpoints (portal sign-in)", cidr="0.0.0.0/0")
        rule(egress, "to-db", self.sg.id, DB_PORT, "to the database server", peer=db_sg)
        rule(ingress, "db-from-portal", db_sg, DB_PORT, "PostgreSQL from the portal tasks", peer=self.sg.id)
        # Secrets Manager, S3, ECR, CloudWatch Logs, Cognito and the ALB's public-key endpoint
        # (to verify x-amzn-oidc-data) are HTTPS endpoints without fixed addresses.
        rule(egress, "https", self.sg.id, 443, "HTTPS to AWS APIs and the ALB key endpoint", cidr="0.0.0.0/0")

    # ------------------------------------------------------------------ image
    def _image(self) -> None:
        name, args = self._name, self._args
        if not args.dockerfile.is_file():
            raise FileNotFoundError(f"{args.dockerfile}: the portal image's Dockerfile is missing")
        self.repository = aws.ecr.Repository(
            f"{name}-repo",
            # awsx.ecr.Image pushes a tag per build; tasks run the pushed digest (image_uri).
            image_tag_mutability="MUTABLE",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
            encryption_configurations=[aws.ecr.RepositoryEncryptionConfigurationArgs(
                encryption_type="KMS", kms_key=args.kms_key_arn)],
            force_delete=not self._prod,
            tags=args.tags, opts=self._child)
        aws.ecr.LifecyclePolicy(
            f"{name}-repo-lifecycle",
            repository=self.repository.name,
            policy=json.dumps({"rules": [{
                "rulePriority": 1, "description": f"keep the last {IMAGES_KEPT} images",
                "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": IMAGES_KEPT},
                "action": {"type": "expire"}}]}),
            opts=pulumi.ResourceOptions(parent=self.repository))
        self.image = awsx.ecr.Image(
            f"{name}-image",
            repository_url=self.repository.repository_url,
            context=str(args.context),
            dockerfile=str(args.dockerfile),
            platform=IMAGE_PLATFORM,
            opts=self._child)

    # ------------------------------------------------------------------ Cognito + ALB rule
    def _sign_in(self, host: pulumi.Output[str]) -> None:
        name, args = self._name, self._args
        required = args.mfa_required
        self.user_pool = aws.cognito.UserPool(
            f"{name}-users",
            name=name,
            # Plus tier: threat protection (compromised credentials, adaptive authentication).
            user_pool_tier="PLUS",
            user_pool_add_ons=aws.cognito.UserPoolUserPoolAddOnsArgs(advanced_security_mode="ENFORCED"),
            admin_create_user_config=aws.cognito.UserPoolAdminCreateUserConfigArgs(
                allow_admin_create_user_only=True),
            password_policy=aws.cognito.UserPoolPasswordPolicyArgs(
                minimum_length=14, require_lowercase=True, require_uppercase=True, require_numbers=True,
                require_symbols=True, temporary_password_validity_days=3, password_history_size=5),
            mfa_configuration="ON" if required else "OPTIONAL",
            software_token_mfa_configuration=aws.cognito.UserPoolSoftwareTokenMfaConfigurationArgs(enabled=True),
            username_attributes=["email"],
            auto_verified_attributes=["email"],
            username_configuration=aws.cognito.UserPoolUsernameConfigurationArgs(case_sensitive=False),
            account_recovery_setting=aws.cognito.UserPoolAccountRecoverySettingArgs(
                recovery_mechanisms=[aws.cognito.UserPoolAccountRecoverySettingRecoveryMechanismArgs(
                    name="verified_email", priority=1)]),
            deletion_protection="ACTIVE" if self._prod else "INACTIVE",
            tags=args.tags, opts=self._child)
        pool_child = pulumi.ResourceOptions(parent=self.user_pool)
        self.groups = [aws.cognito.UserGroup(
            f"{name}-group-{group}", user_pool_id=self.user_pool.id, name=group, description=description,
            precedence=i, opts=pool_child) for i, (group, description) in enumerate(GROUPS.items())]
        prefix = (pulumi.Output.from_input(args.cognito_domain_prefix) if args.cognito_domain_prefix
                  else pulumi.Output.concat(name, "-", self._account))
        self.domain = aws.cognito.UserPoolDomain(
            f"{name}-domain", domain=prefix, user_pool_id=self.user_pool.id, opts=pool_child)
        self.client = aws.cognito.UserPoolClient(
            f"{name}-client",
            name=f"{name}-alb",
            user_pool_id=self.user_pool.id,
            # The ALB exchanges the authorization code with the client secret.
            generate_secret=True,
            allowed_oauth_flows=["code"],
            allowed_oauth_flows_user_pool_client=True,
            allowed_oauth_scopes=["openid", "email"],
            supported_identity_providers=["COGNITO"],
            callback_urls=[pulumi.Output.concat("https://", host, "/oauth2/idpresponse")],
            explicit_auth_flows=["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
            prevent_user_existence_errors="ENABLED",
            enable_token_revocation=True,
            access_token_validity=60, id_token_validity=60, refresh_token_validity=12,
            token_validity_units=aws.cognito.UserPoolClientTokenValidityUnitsArgs(
                access_token="minutes", id_token="minutes", refresh_token="hours"),
            opts=pool_child)

        self.target_group = aws.lb.TargetGroup(
            f"{name}-tg",
            port=PORTAL_PORT, protocol="HTTP", target_type="ip", vpc_id=args.vpc_id,
            deregistration_delay=30,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                path=HEALTH_PATH, protocol="HTTP", port="traffic-port", matcher="200",
                interval=30, timeout=5, healthy_threshold=2, unhealthy_threshold=3),
            tags=args.tags, opts=self._child)
        self.listener_rule = aws.lb.ListenerRule(
            f"{name}-rule",
            listener_arn=args.platform.https_listener_arn,
            priority=LISTENER_RULE_PRIORITY,
            actions=[
                aws.lb.ListenerRuleActionArgs(
                    type="authenticate-cognito", order=1,
                    authenticate_cognito=aws.lb.ListenerRuleActionAuthenticateCognitoArgs(
                        user_pool_arn=self.user_pool.arn,
                        user_pool_client_id=self.client.id,
                        user_pool_domain=self.domain.domain,
                        on_unauthenticated_request="authenticate",
                        scope="openid email",
                        session_cookie_name=SESSION_COOKIE,
                        session_timeout=SESSION_TIMEOUT_S)),
                aws.lb.ListenerRuleActionArgs(type="forward", order=2, target_group_arn=self.target_group.arn),
            ],
            conditions=[aws.lb.ListenerRuleConditionArgs(
                path_pattern=aws.lb.ListenerRuleConditionPathPatternArgs(values=list(PATH_PATTERNS)))],
            tags=args.tags, opts=self._child)

    # ------------------------------------------------------------------ database role
    def _database_role(self) -> None:
        """The portal's PostgreSQL role and database, made from inside the VPC at deploy time."""
        name, args, platform = self._name, self._args, self._args.platform
        tags = args.tags
        password = generated_password(f"{name}-db-password", self._child)
        self.db_secret = aws.secretsmanager.Secret(
            f"{name}-db-secret", description="Portal database role: username, password (ECS injects password)",
            kms_key_id=args.kms_key_arn, recovery_window_in_days=Retention.of(self._prod).secret_recovery_days,
            tags=tags, opts=self._child)
        secret_value = aws.secretsmanager.SecretVersion(
            f"{name}-db-secret-value", secret_id=self.db_secret.id,
            secret_string=pulumi.Output.all(password.result, platform.db_address).apply(
                lambda v: json.dumps({"username": DB_ROLE, "password": v[0], "host": v[1], "port": DB_PORT,
                                      "dbname": DB_NAME})),
            opts=pulumi.ResourceOptions(parent=self.db_secret))

        function_name = f"{name}-db-role"
        deploy_time = {**tags, DEPLOY_TIME_TAG[0]: DEPLOY_TIME_TAG[1]}  # priced as such (components/checks/costs.py)
        log_group = encrypted_log_group(
            f"{name}-db-role-logs", f"/aws/lambda/{function_name}", retention_days=args.log_retention_days,
            kms_key_arn=args.kms_key_arn, tags=deploy_time, opts=self._child)
        sg = aws.ec2.SecurityGroup(
            f"{name}-db-role-sg", vpc_id=args.vpc_id, tags=tags, opts=self._child,
            description="Portal DB role function: no ingress; out to the database and HTTPS (Secrets Manager)")
        port_rule(aws.vpc.SecurityGroupEgressRule, f"{name}-db-role-to-db", security_group_id=sg.id, port=DB_PORT,
                  description="to the database server", peer=platform.db_security_group_id, tags=tags, parent=sg)
        port_rule(aws.vpc.SecurityGroupIngressRule, f"{name}-db-from-db-role",
                  security_group_id=platform.db_security_group_id, port=DB_PORT,
                  description="PostgreSQL from the portal DB role function (deploy time)", peer=sg.id, tags=tags,
                  parent=sg)
        port_rule(aws.vpc.SecurityGroupEgressRule, f"{name}-db-role-https", security_group_id=sg.id, port=443,
                  description="HTTPS to Secrets Manager", cidr="0.0.0.0/0", tags=tags, parent=sg)

        role = aws.iam.Role(
            f"{name}-db-role-role", description="Portal DB role function: VPC, its logs, the two database secrets",
            assume_role_policy=json.dumps(service_role_trust("lambda.amazonaws.com")), tags=tags, opts=self._child)
        policy = aws.iam.RolePolicy(
            f"{name}-db-role-policy", role=role.id,
            policy=pulumi.Output.all(log_group.arn, platform.db_secret_arn, self.db_secret.arn, args.kms_key_arn).apply(
                lambda v: json.dumps(db_role_function_policy(log_group_arn=v[0], secret_arns=[v[1], v[2]],
                                                             kms_key_arn=v[3]))),
            opts=pulumi.ResourceOptions(parent=role))
        function = aws.lambda_.Function(
            f"{name}-db-role",
            name=function_name,
            description="Creates/updates the portal's PostgreSQL role and database (run by pulumi up)",
            role=role.arn, runtime=LAMBDA_RUNTIME, handler="handler.lambda_handler",
            code=lambda_archive("portal_db_role", with_labeling=False),
            layers=[args.dependency_layer_arn], architectures=["x86_64"],
            memory_size=256, timeout=60,
            vpc_config=aws.lambda_.FunctionVpcConfigArgs(subnet_ids=args.private_subnet_ids, security_group_ids=[sg.id]),
            kms_key_arn=args.kms_key_arn,
            tracing_config=aws.lambda_.FunctionTracingConfigArgs(mode="Active"),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="JSON", log_group=log_group.name),
            tags=deploy_time,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[log_group, policy]))
        # Runs on create, and again when the password or the function's code changes; a failure
        # (database unreachable, SQL error) fails `pulumi up`.
        self.db_role_setup = aws.lambda_.Invocation(
            f"{name}-db-role-setup",
            function_name=function.name,
            input=pulumi.Output.all(platform.db_secret_arn, self.db_secret.arn).apply(
                lambda v: json.dumps({"master_secret_arn": v[0], "role_secret_arn": v[1], "database": DB_NAME,
                                      "protected_databases": list(PROTECTED_DATABASES)})),
            triggers={"secret_version": secret_value.version_id,
                      "code": hashlib.sha256(DB_ROLE_FUNCTION.read_bytes()).hexdigest()},
            opts=pulumi.ResourceOptions(parent=function, depends_on=[secret_value, platform.db_secret_version]))

    # ------------------------------------------------------------------ session secret
    def _session_secret(self) -> None:
        name, args = self._name, self._args
        session = random.RandomPassword(f"{name}-session-key", length=64, special=False, opts=self._child)
        self.session_secret = aws.secretsmanager.Secret(
            f"{name}-session-secret", description="Portal session-cookie signing key (ECS injects it)",
            kms_key_id=args.kms_key_arn, recovery_window_in_days=Retention.of(self._prod).secret_recovery_days,
            tags=args.tags, opts=self._child)
        aws.secretsmanager.SecretVersion(
            f"{name}-session-secret-value", secret_id=self.session_secret.id, secret_string=session.result,
            opts=pulumi.ResourceOptions(parent=self.session_secret))

    # ------------------------------------------------------------------ task and service
    def _service(self) -> None:
        name, args, platform, orthanc = self._name, self._args, self._args.platform, self._args.orthanc
        region, deidentify, db_user, pool_size = args.region, args.deidentify, DB_ROLE, args.db_pool_size

        def containers(log_group: pulumi.Output[str]) -> pulumi.Output[str]:
            return pulumi.Output.all(
                self.image.image_uri, log_group, platform.db_address, self.db_secret.arn,
                self.session_secret.arn, self.user_pool.id, self.client.id, platform.alb_arn, orthanc.url,
                orthanc.secret_arn, args.salt_secret_arn, args.annotation_bucket_name, args.kms_key_arn).apply(
                lambda v: json.dumps(portal_container_definitions(
                    image=v[0], region=region, log_group=v[1], db_host=v[2], db_user=db_user, db_secret_arn=v[3],
                    session_secret_arn=v[4], user_pool_id=v[5], client_id=v[6], alb_arn=v[7], orthanc_url=v[8],
                    orthanc_secret_arn=v[9], salt_secret_arn=v[10], export_bucket=v[11], export_kms_key_id=v[12],
                    deidentify=deidentify, db_pool_size=pool_size)))

        def agent_policy(log_group_arn: pulumi.Output[str]) -> pulumi.Output[str]:
            return pulumi.Output.all(self.repository.arn, log_group_arn, self.db_secret.arn,
                                     self.session_secret.arn, args.kms_key_arn).apply(
                lambda v: json.dumps(portal_execution_policy(
                    repository_arn=v[0], log_group_arn=v[1], secret_arns=[v[2], v[3]], kms_key_arn=v[4])))

        self.fargate = FargateService(name, FargateServiceArgs(
            size=args.size, cluster_arn=platform.cluster_arn, cluster_name=platform.cluster_name,
            subnet_ids=args.private_subnet_ids, security_group_ids=[self.sg.id, orthanc.client_security_group_id],
            container_definitions=containers,
            execution_role_description="ECS agent for the portal: pull its image, write its logs, read its two secrets",
            execution_policy=agent_policy,
            task_role_description="Portal container: Orthanc and salt secrets, exports under portal/, Cognito groups",
            task_policy=pulumi.Output.all(orthanc.secret_arn, args.salt_secret_arn, args.annotation_bucket_arn,
                                          args.kms_key_arn, self.user_pool.arn).apply(
                lambda v: json.dumps(portal_task_policy(
                    secret_arns=[v[0], v[1]], bucket_arn=v[2], kms_key_arn=v[3], user_pool_arn=v[4]))),
            load_balancers=[aws.ecs.ServiceLoadBalancerArgs(
                target_group_arn=self.target_group.arn, container_name=CONTAINER_NAME, container_port=PORTAL_PORT)],
            log_retention_days=args.log_retention_days, kms_key_arn=args.kms_key_arn,
            # `migrate` runs before `serve` on every start; give it time before ALB checks count.
            health_check_grace_period_seconds=120,
            # The root filesystem is read-only; the image cache and temp files go to task storage.
            volumes=[aws.ecs.TaskDefinitionVolumeArgs(name="tmp")],
            # The target group needs its listener rule; the role and database must exist before the
            # first task runs `migrate`.
            depends_on=[self.listener_rule, self.db_role_setup], tags=args.tags), opts=self._child)


# ---------------------------------------------------------------------- documents (pure functions)
def portal_db_pool_size(config: StackConfig) -> int:
    """PORTAL_DB_POOL_SIZE so the portal's peak fits beside Orthanc's under RDS max_connections.

    Orthanc takes its budget first (components/orthanc.py: IndexConnectionsCount × its tasks at the
    deployment peak); the portal's tasks at their own peak (max × 2) share what is left, each opening
    at most pool size + PORTAL_MAX_OVERFLOW.
    """
    orthanc_tasks = config.max_tasks * DEPLOYMENT_MAX_PERCENT // 100
    orthanc_used = orthanc_tasks * connection_budget(config.db_max_connections, orthanc_tasks)
    portal_tasks = config.portal_max_tasks * DEPLOYMENT_MAX_PERCENT // 100
    per_task = (config.db_max_connections - DEFAULT_RESERVED_CONNECTIONS - orthanc_used) // portal_tasks
    pool = min(PORTAL_MAX_POOL, per_task - PORTAL_MAX_OVERFLOW)
    if pool < 1:
        raise ConfigError(
            f"dicom-annotate:portalMaxTasks: {config.db_instance_class} allows {config.db_max_connections} "
            f"connections; after Orthanc's {orthanc_used} and {DEFAULT_RESERVED_CONNECTIONS} reserved, "
            f"{portal_tasks} portal tasks at the deployment peak get {per_task} each, fewer than the "
            f"{PORTAL_MAX_OVERFLOW + 1} one needs: choose a larger dbInstanceClass or fewer tasks")
    return pool


def portal_environment(*, region: str, db_host: str, db_user: str, user_pool_id: str, client_id: str,
                       alb_arn: str, orthanc_url: str, orthanc_secret_arn: str, salt_secret_arn: str,
                       export_bucket: str, export_kms_key_id: str, deidentify: bool,
                       db_pool_size: int) -> dict[str, str]:
    """The portal's plain settings (names per the portal settings contract); no secret values."""
    return {
        N.HOST: "0.0.0.0",  # inside the task's own network namespace; the SG admits only the ALB
        N.PORT: str(PORTAL_PORT),
        N.ROOT_PATH: ROOT_PATH,  # the ALB does not strip the prefix
        N.AUTH_MODE: "alb-oidc",
        N.OIDC_REGION: region,
        N.OIDC_ALB_ARN: alb_arn,  # the expected `signer` of x-amzn-oidc-data
        N.COGNITO_USER_POOL_ID: user_pool_id,
        N.COGNITO_CLIENT_ID: client_id,
        N.DB_HOST: db_host,
        N.DB_PORT: str(DB_PORT),
        N.DB_NAME: DB_NAME,
        N.DB_USER: db_user,
        N.DB_SSLMODE: "require",  # the parameter group sets rds.force_ssl
        N.DB_CREATE: "false",  # made at deploy time with its owner (lambda_src/portal_db_role)
        N.ORTHANC_URL: orthanc_url,
        N.ORTHANC_SECRET_ARN: orthanc_secret_arn,
        N.DEIDENTIFY: "true" if deidentify else "false",
        N.DEIDENTIFY_SALT_SECRET_ARN: salt_secret_arn,
        N.CACHE_DIR: CACHE_DIR,
        N.EXPORT_BUCKET: export_bucket,
        N.EXPORT_KMS_KEY_ID: export_kms_key_id,  # the task role may write only under EXPORT_PREFIX
        N.DB_POOL_SIZE: str(db_pool_size),
        "AWS_DEFAULT_REGION": region,
    }


def portal_container_definitions(*, image: str, region: str, log_group: str, db_secret_arn: str,
                                 session_secret_arn: str, **settings: Any) -> list[dict[str, Any]]:
    """ECS container definition: plain settings in ``environment``, the two secrets in ``secrets``."""
    env = portal_environment(region=region, **settings)
    secrets = {
        N.DB_PASSWORD: f"{db_secret_arn}:password::",
        N.SESSION_SECRET: session_secret_arn,
    }
    probe = (f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{PORTAL_PORT}{HEALTH_PATH}', "
             "timeout=4)")
    return [{
        "name": CONTAINER_NAME,
        "image": image,
        "essential": True,
        "portMappings": [{"containerPort": PORTAL_PORT, "hostPort": PORTAL_PORT, "protocol": "tcp"}],
        "environment": [{"name": k, "value": v} for k, v in sorted(env.items())],
        "secrets": [{"name": k, "valueFrom": v} for k, v in sorted(secrets.items())],
        "healthCheck": {"command": ["CMD", "python", "-c", probe],
                        "interval": 30, "timeout": 5, "retries": 3, "startPeriod": 90},
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {"awslogs-group": log_group, "awslogs-region": region,
                        "awslogs-stream-prefix": CONTAINER_NAME},
        },
        "mountPoints": [{"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False}],
        "readonlyRootFilesystem": True,
        "privileged": False,
        "user": "10001:10001",
        "stopTimeout": 30,
    }]


def db_role_function_policy(*, log_group_arn: str, secret_arns: list[str], kms_key_arn: str) -> dict[str, Any]:
    """The deploy-time role function: VPC ENIs, its own logs, the master and portal secrets."""
    return {"Version": "2012-10-17", "Statement": [
        *vpc_lambda_statements(log_group_arn, secret_arns),
        {"Sid": "Key", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": kms_key_arn},
    ]}


def portal_execution_policy(*, repository_arn: str, log_group_arn: str, secret_arns: list[str],
                            kms_key_arn: str) -> dict[str, Any]:
    """ECS agent: this repository's image, this log group, the database and session secrets."""
    return {"Version": "2012-10-17", "Statement": [
        # GetAuthorizationToken has no resource-level permission.
        {"Sid": "EcrAuth", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
        {"Sid": "EcrPull", "Effect": "Allow",
         "Action": ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
         "Resource": repository_arn},
        {"Sid": "Logs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"{log_group_arn.removesuffix(':*')}:*"},
        {"Sid": "Secrets", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
         "Resource": list(secret_arns)},
        # Secrets and the repository's layers are encrypted with the project key.
        {"Sid": "Key", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": kms_key_arn},
    ]}


def portal_task_policy(*, secret_arns: list[str], bucket_arn: str, kms_key_arn: str,
                       user_pool_arn: str) -> dict[str, Any]:
    """The portal process: read Orthanc/salt secrets, export under portal/, read users' groups."""
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "Secrets", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
         "Resource": list(secret_arns)},
        {"Sid": "ExportObjects", "Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"],
         "Resource": f"{bucket_arn}/{EXPORT_PREFIX}*"},
        {"Sid": "Key", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
         "Resource": kms_key_arn},
        # Cognito's userInfo (what the ALB forwards) carries no groups; the portal may look them up.
        {"Sid": "UserGroups", "Effect": "Allow", "Action": "cognito-idp:AdminListGroupsForUser",
         "Resource": user_pool_arn},
    ]}
