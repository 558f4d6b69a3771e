"""Policy rules over declared resources — the one place each rule of the security floor lives.

Every rule reads a resource as ``.type``, ``.name`` and ``.inputs`` (camelCase wire names, plain
values), the shape of :class:`components.offline.RecordedResource`. The same functions run in three
places, so a rule is never written twice:

* the unit tests, over the program run under mocks (:func:`evaluate`);
* the offline plan (``make plan STACK=…``, :mod:`components.plan`);
* the CrossGuard policy pack in ``policy/`` (``pulumi preview --policy-pack policy``), whose adapter
  turns ``args.props`` into the same dict shape.

Rule ids follow the AWSGuard / ``pulumi/compliance-policies`` names where one exists; each rule's
``control`` names the AWS Foundational Security Best Practices (FSBP) control it implements, or
docs/architecture.md's "Security posture" for the project's own floor.

Two scopes:

* ``resource`` rules need only the resource itself;
* ``stack`` rules also look at relations (bucket X has an SSE configuration whose ``bucket`` input
  refers to X). A :class:`Context` carries the resource list and a link index: which resources a
  resource's inputs refer to. Under mocks an input that references another resource holds that
  resource's *mocked* id/arn (``components.offline._mock_state``), so links are found by matching
  input values against every resource's identifiers; the policy pack adds Pulumi's property
  dependencies, which also hold during a preview when ids are still unknown.

A rule whose resource types do not occur in a stack is "not applicable" (``n/a``), never "passed".
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Protocol, Sequence

# ------------------------------------------------------------------------------------------------
# Shapes


class ResourceLike(Protocol):
    """What a rule reads: a recorded resource, or the policy pack's converted ``args.props``."""

    type: str
    name: str
    inputs: dict[str, Any]


# Value a policy-pack adapter puts where Pulumi reports "unknown during preview".
UNKNOWN = "<unknown during preview>"

# Placeholder the mocks harness (components/offline.py) puts in place of every secret config value
# and generated password: seeing it in an env var or policy means a secret leaked there.
try:  # the policy pack may run without PyYAML importable; the literal is the fallback.
    from components.offline import PLACEHOLDER_SECRET
except Exception:  # pragma: no cover - exercised only outside the project venv
    PLACEHOLDER_SECRET = "placeholder-secret-value"


class UnknownValue(Exception):
    """A value a rule needs is unknown (preview); the rule cannot decide yet."""

    def __init__(self, resource: str, path: str):
        super().__init__(f"{resource}: {path} is unknown until the resource is created")
        self.resource = resource
        self.path = path


@dataclass(frozen=True)
class Context:
    """What a rule may know beyond one resource: the stack's settings and the other resources.

    ``links[i][key]`` is the set of positions (in ``resources``) of the resources that input
    ``key`` of ``resources[i]`` refers to.
    """

    environment: str = "dev"
    allow_http: bool = False
    stack: str = ""
    resources: tuple[Any, ...] = ()
    links: Mapping[int, Mapping[str, frozenset[int]]] = field(default_factory=dict)

    @property
    def prod(self) -> bool:
        return self.environment == "prod"

    def _position(self, resource: Any) -> Optional[int]:
        for i, candidate in enumerate(self.resources):
            if candidate is resource:
                return i
        return None

    def targets(self, source: Any, key: str, types: Sequence[str] = ()) -> list[Any]:
        """Resources that input ``key`` of ``source`` refers to (optionally only of ``types``)."""
        pos = self._position(source)
        if pos is None:
            return []
        found = [self.resources[i] for i in sorted(self.links.get(pos, {}).get(key, ()))]
        return [r for r in found if not types or r.type in types]

    def referrers(self, target: Any, types: Sequence[str], key: str) -> list[Any]:
        """Resources of ``types`` whose input ``key`` refers to ``target``."""
        pos = self._position(target)
        if pos is None:
            return []
        return [r for i, r in enumerate(self.resources)
                if r.type in types and pos in self.links.get(i, {}).get(key, ())]


Check = Callable[[Any, Context], list[str]]


@dataclass(frozen=True)
class Rule:
    """One policy rule: which resource types it judges and how.

    ``check`` returns human-readable violations (empty: the resource complies). ``scope`` is
    ``"stack"`` when the check needs :class:`Context` relations (the policy pack then registers it
    as a stack validation). ``applies`` limits a rule to some stacks (prod-only controls);
    ``selects`` limits it to some resources of its types (HTTP listeners among all listeners).
    """

    id: str
    description: str
    resource_types: tuple[str, ...]
    check: Check
    control: str = ""
    scope: str = "resource"
    severity: str = "high"
    applies: Callable[[Context], bool] = lambda ctx: True
    selects: Callable[[Any, Context], bool] = lambda r, ctx: True


@dataclass(frozen=True)
class RuleResult:
    rule_id: str
    status: str                   # "pass" | "fail" | "n/a"
    violations: tuple[str, ...]
    checked: int                  # resources the rule judged
    description: str
    control: str

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule_id, "status": self.status, "violations": list(self.violations),
                "checked": self.checked, "description": self.description, "control": self.control}


# ------------------------------------------------------------------------------------------------
# Resource types (pulumi-aws 7 tokens; the aws:alb/* aliases are the same resources)

BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
SSE_CONFIGS = ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
               "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2")
VERSIONINGS = ("aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2")
PUBLIC_ACCESS_BLOCKS = ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",)
BUCKET_POLICIES = ("aws:s3/bucketPolicy:BucketPolicy",)
OWNERSHIP_CONTROLS = ("aws:s3/bucketOwnershipControls:BucketOwnershipControls",)
CORS_CONFIGS = ("aws:s3/bucketCorsConfiguration:BucketCorsConfiguration",
                "aws:s3/bucketCorsConfigurationV2:BucketCorsConfigurationV2")
RDS_INSTANCES = ("aws:rds/instance:Instance",)
RDS_CLUSTERS = ("aws:rds/cluster:Cluster",)
RDS_PARAMETER_GROUPS = ("aws:rds/parameterGroup:ParameterGroup",)
RDS_CLUSTER_PARAMETER_GROUPS = ("aws:rds/clusterParameterGroup:ClusterParameterGroup",)
LOAD_BALANCERS = ("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer")
LISTENERS = ("aws:lb/listener:Listener", "aws:alb/listener:Listener")
SECURITY_GROUPS = ("aws:ec2/securityGroup:SecurityGroup",)
SG_RULES = ("aws:ec2/securityGroupRule:SecurityGroupRule",)
SG_INGRESS_RULES = ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",)
VPC_ENDPOINTS = ("aws:ec2/vpcEndpoint:VpcEndpoint",)
VPCS = ("aws:ec2/vpc:Vpc", "awsx:ec2:Vpc")
FLOW_LOGS = ("aws:ec2/flowLog:FlowLog",)
ECS_CLUSTERS = ("aws:ecs/cluster:Cluster",)
ECS_SERVICES = ("aws:ecs/service:Service",)
ECS_TASK_DEFINITIONS = ("aws:ecs/taskDefinition:TaskDefinition",)
KMS_KEYS = ("aws:kms/key:Key",)
LOG_GROUPS = ("aws:cloudwatch/logGroup:LogGroup",)
IAM_POLICY_HOLDERS = ("aws:iam/policy:Policy", "aws:iam/rolePolicy:RolePolicy",
                      "aws:iam/userPolicy:UserPolicy", "aws:iam/groupPolicy:GroupPolicy",
                      "aws:iam/role:Role")
IAM_ROLES = ("aws:iam/role:Role",)
IAM_ATTACHMENTS = ("aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                   "aws:iam/policyAttachment:PolicyAttachment",
                   "aws:iam/userPolicyAttachment:UserPolicyAttachment",
                   "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
                   "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive")
LAMBDAS = ("aws:lambda/function:Function",)
LAMBDA_PERMISSIONS = ("aws:lambda/permission:Permission",)
NOTEBOOKS = ("aws:sagemaker/notebookInstance:NotebookInstance",)
SECRETS = ("aws:secretsmanager/secret:Secret",)
DISTRIBUTIONS = ("aws:cloudfront/distribution:Distribution",)
ORIGIN_ACCESS_CONTROLS = ("aws:cloudfront/originAccessControl:OriginAccessControl",)
RESPONSE_HEADERS_POLICIES = ("aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy",)
LISTENER_RULES = ("aws:lb/listenerRule:ListenerRule", "aws:alb/listenerRule:ListenerRule")
USER_POOLS = ("aws:cognito/userPool:UserPool",)
ECR_REPOSITORIES = ("aws:ecr/repository:Repository",)
ECR_LIFECYCLE_POLICIES = ("aws:ecr/lifecyclePolicy:LifecyclePolicy",)

# Tag that marks a bucket as an ALB access-log bucket (the one SSE-S3 exception), for buckets whose
# load balancer is declared elsewhere. A bucket named in an ALB's accessLogs needs no tag.
ALB_LOG_BUCKET_TAG = ("purpose", "alb-access-logs")

# ------------------------------------------------------------------------------------------------
# Small readers


def get(resource: Any, *path: Any, default: Any = None, allow_unknown: bool = False) -> Any:
    """``resource.inputs[path…]``; raises :class:`UnknownValue` on a preview-unknown value.

    ``allow_unknown`` is for presence checks: an unknown value will exist once created.
    """
    node: Any = resource.inputs
    for key in path:
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, (list, tuple)) and isinstance(key, int) and -len(node) <= key < len(node):
            node = node[key]
        else:
            return default
    if node == UNKNOWN and not allow_unknown:
        raise UnknownValue(resource.name, ".".join(str(p) for p in path))
    return node


def present(resource: Any, *path: Any) -> bool:
    """True when the input exists and is non-empty (unknown counts as present)."""
    value = get(resource, *path, allow_unknown=True)
    return value not in (None, "", [], {})


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def parse_json(resource: Any, value: Any, what: str) -> Any:
    """A JSON document that may be given as a string or already parsed."""
    if value == UNKNOWN:
        raise UnknownValue(resource.name, what)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _statements(document: Any) -> list[dict[str, Any]]:
    if not isinstance(document, Mapping):
        return []
    return [s for s in as_list(document.get("Statement")) if isinstance(s, Mapping)]


def as_int(value: Any) -> Optional[int]:
    """An integer input; wire values arrive as floats (protobuf Struct), ``7.0`` means 7."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return None


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _falsy(value: Any) -> bool:
    return value is False or (isinstance(value, str) and value.lower() == "false")


def _prod(ctx: Context) -> bool:
    return ctx.prod


# ------------------------------------------------------------------------------------------------
# RDS


def check_rds_storage_encrypted(r: Any, ctx: Context) -> list[str]:
    """FSBP RDS.3: RDS DB instances should have encryption at rest enabled (and RDS.4 for clusters)."""
    if not _truthy(get(r, "storageEncrypted")):
        return [f"{r.name}: storageEncrypted is not true"]
    return []


def check_rds_public_access(r: Any, ctx: Context) -> list[str]:
    """FSBP RDS.2: RDS DB instances should prohibit public access (PubliclyAccessible false)."""
    if _truthy(get(r, "publiclyAccessible")):
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
    if not _truthy(get(r, "deletionProtection")):
        return [f"{r.name}: deletionProtection is not true in {ctx.environment}"]
    return []


def check_rds_multi_az(r: Any, ctx: Context) -> list[str]:
    """FSBP RDS.5: RDS DB instances should be configured with multiple Availability Zones (prod)."""
    if not _truthy(get(r, "multiAz")):
        return [f"{r.name}: multiAz is not true in {ctx.environment}"]
    return []


def check_rds_auto_minor_version_upgrade(r: Any, ctx: Context) -> list[str]:
    """FSBP RDS.13: RDS automatic minor version upgrades should be enabled (the default)."""
    if _falsy(get(r, "autoMinorVersionUpgrade")):
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


# ------------------------------------------------------------------------------------------------
# S3 (relation rules: each bucket and the configuration resources that refer to it)


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
    if _truthy(get(bucket, "versioning", "enabled")):
        return []
    return [f"{bucket.name}: no BucketVersioning with status Enabled refers to this bucket"]


def check_s3_public_access_block(bucket: Any, ctx: Context) -> list[str]:
    """FSBP S3.8: S3 general purpose buckets should block public access (all four settings)."""
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    blocks = _bucket_refs(bucket, ctx, PUBLIC_ACCESS_BLOCKS)
    if not blocks:
        return [f"{bucket.name}: no BucketPublicAccessBlock refers to this bucket"]
    for block in blocks:
        missing = [f for f in flags if not _truthy(get(block, f))]
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
    return _falsy(secure) or as_list(secure) in (["false"], [False])


def check_s3_ssl_requests_only(bucket: Any, ctx: Context) -> list[str]:
    """FSBP S3.5: S3 buckets should require requests to use SSL (Deny aws:SecureTransport=false)."""
    policies = _bucket_refs(bucket, ctx, BUCKET_POLICIES)
    if not policies:
        return [f"{bucket.name}: no bucket policy refers to this bucket"]
    for policy in policies:
        document = parse_json(policy, get(policy, "policy", allow_unknown=True), f"{policy.name}.policy")
        if any(_denies_insecure_transport(s) for s in _statements(document)):
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


# ------------------------------------------------------------------------------------------------
# Load balancers


def _lb_type(r: Any) -> str:
    return str(get(r, "loadBalancerType") or "application")


def _is_alb(r: Any, ctx: Context) -> bool:
    return _lb_type(r) == "application"


def _is_http_listener(r: Any, ctx: Context) -> bool:
    return str(get(r, "protocol") or "HTTP").upper() == "HTTP"


def _is_tls_listener(r: Any, ctx: Context) -> bool:
    return str(get(r, "protocol") or "").upper() in ("HTTPS", "TLS")


def check_alb_http_redirect(r: Any, ctx: Context) -> list[str]:
    """FSBP ELB.1: ALBs should redirect all HTTP requests to HTTPS.

    Dev may serve plain HTTP only with the explicit ``allowHttp: true`` (the plan warns about it).
    """
    if ctx.allow_http:
        return []
    actions = [a for a in as_list(get(r, "defaultActions")) if isinstance(a, Mapping)]
    if not actions:
        return [f"{r.name}: HTTP listener has no default action"]
    bad = [a.get("type") for a in actions
           if a.get("type") != "redirect"
           or str((a.get("redirect") or {}).get("protocol", "")).upper() != "HTTPS"]
    if bad:
        return [f"{r.name}: HTTP listener default action is {bad}, needs a redirect to HTTPS "
                f"(or allowHttp: true in dev)"]
    return []


# Modern ELB security policies: TLS 1.3 with TLS 1.2 (or 1.3 only), forward secrecy only.
# The Ext1/Ext2 variants re-admit CBC ciphers for old clients and are not accepted.
MODERN_TLS_POLICY = re.compile(r"^ELBSecurityPolicy-TLS13-1-[23]-(Res-)?(FIPS-|PQ-)?\d{4}-\d{2}$")


def check_alb_tls_policy(r: Any, ctx: Context) -> list[str]:
    """FSBP ELB.17: ALB/NLB listeners should use recommended security policies (TLS 1.3 family)."""
    problems = []
    policy = get(r, "sslPolicy")
    if not policy or not MODERN_TLS_POLICY.match(str(policy)):
        problems.append(f"{r.name}: sslPolicy {policy!r} is not a modern TLS 1.3 policy "
                        f"(e.g. ELBSecurityPolicy-TLS13-1-2-2021-06)")
    if not present(r, "certificateArn"):
        problems.append(f"{r.name}: TLS listener without certificateArn")
    return problems


def check_alb_drop_invalid_headers(r: Any, ctx: Context) -> list[str]:
    """FSBP ELB.4: Application Load Balancers should drop invalid HTTP headers."""
    if not _truthy(get(r, "dropInvalidHeaderFields")):
        return [f"{r.name}: dropInvalidHeaderFields is not true"]
    return []


def check_alb_access_logs(r: Any, ctx: Context) -> list[str]:
    """FSBP ELB.5: Application and Classic Load Balancers logging should be enabled."""
    if not _truthy(get(r, "accessLogs", "enabled")) or not present(r, "accessLogs", "bucket"):
        return [f"{r.name}: accessLogs not enabled with a bucket"]
    return []


def check_elb_deletion_protection(r: Any, ctx: Context) -> list[str]:
    """FSBP ELB.6: Application, Gateway and Network Load Balancers should have deletion protection (prod)."""
    if not _truthy(get(r, "enableDeletionProtection")):
        return [f"{r.name}: enableDeletionProtection is not true in {ctx.environment}"]
    return []


# ------------------------------------------------------------------------------------------------
# Security groups


@dataclass(frozen=True)
class Ingress:
    """One ingress permission, normalised from the three ways pulumi-aws can declare it."""

    declared_by: str
    from_port: Optional[int]
    to_port: Optional[int]
    protocol: str
    cidrs: tuple[str, ...]
    named_sources: tuple[str, ...]   # security groups, prefix lists, self


def _port(value: Any) -> Optional[int]:
    return as_int(value)


def ingress_of(r: Any) -> list[Ingress]:
    """Ingress permissions declared by a SecurityGroup (inline), SecurityGroupRule or IngressRule."""
    out: list[Ingress] = []
    if r.type in SECURITY_GROUPS:
        for rule in as_list(get(r, "ingress")):
            if not isinstance(rule, Mapping):
                continue
            named = [*as_list(rule.get("securityGroups")), *as_list(rule.get("prefixListIds"))]
            if _truthy(rule.get("self")):
                named.append("self")
            out.append(Ingress(r.name, _port(rule.get("fromPort")), _port(rule.get("toPort")),
                               str(rule.get("protocol", "")),
                               tuple([*as_list(rule.get("cidrBlocks")), *as_list(rule.get("ipv6CidrBlocks"))]),
                               tuple(str(n) for n in named)))
    elif r.type in SG_RULES:
        if get(r, "type") == "ingress":
            named = [*as_list(get(r, "sourceSecurityGroupId")), *as_list(get(r, "prefixListIds"))]
            if _truthy(get(r, "self")):
                named.append("self")
            out.append(Ingress(r.name, _port(get(r, "fromPort")), _port(get(r, "toPort")),
                               str(get(r, "protocol") or ""),
                               tuple([*as_list(get(r, "cidrBlocks")), *as_list(get(r, "ipv6CidrBlocks"))]),
                               tuple(str(n) for n in named)))
    elif r.type in SG_INGRESS_RULES:
        named = [*as_list(get(r, "referencedSecurityGroupId")), *as_list(get(r, "prefixListId"))]
        out.append(Ingress(r.name, _port(get(r, "fromPort")), _port(get(r, "toPort")),
                           str(get(r, "ipProtocol") or ""),
                           tuple([*as_list(get(r, "cidrIpv4")), *as_list(get(r, "cidrIpv6"))]),
                           tuple(str(n) for n in named)))
    return out


def _owning_groups(r: Any, ctx: Context) -> list[Any]:
    if r.type in SECURITY_GROUPS:
        return [r]
    return ctx.targets(r, "securityGroupId", SECURITY_GROUPS)


def _group_users(group: Any, ctx: Context) -> dict[str, list[Any]]:
    return {
        "alb": [lb for lb in ctx.referrers(group, LOAD_BALANCERS, "securityGroups") if _lb_type(lb) == "application"],
        "nlb": [lb for lb in ctx.referrers(group, LOAD_BALANCERS, "securityGroups") if _lb_type(lb) == "network"],
        "endpoint": ctx.referrers(group, VPC_ENDPOINTS, "securityGroupIds"),
    }


def _is_world(cidr: str) -> bool:
    try:
        return ipaddress.ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return False


def check_no_unrestricted_ingress(r: Any, ctx: Context) -> list[str]:
    """FSBP EC2.18/EC2.19 (AWSGuard ec2-security-group-no-public-ingress): no 0.0.0.0/0 or ::/0
    ingress, except on the internet-facing ALB's security group for TCP 80 and 443 exactly."""
    entries = ingress_of(r)
    world = [e for e in entries if any(_is_world(c) for c in e.cidrs)]
    if not world:
        return []
    groups = _owning_groups(r, ctx)
    if not groups:
        return [f"{r.name}: open-to-the-internet ingress on a security group not declared in this stack"]
    on_alb = any(_group_users(g, ctx)["alb"] for g in groups)
    problems = []
    for e in world:
        web_port = e.from_port == e.to_port and e.from_port in (80, 443)
        tcp = e.protocol.lower() in ("tcp", "6")
        if not (on_alb and web_port and tcp):
            problems.append(f"{r.name}: ingress {e.protocol}/{e.from_port}-{e.to_port} from "
                            f"{[c for c in e.cidrs if _is_world(c)]} (only the ALB on 80/443 may face the internet)")
    return problems


def check_ingress_named_source(r: Any, ctx: Context) -> list[str]:
    """docs/architecture.md floor: security groups name their source (ALB → service, service → DB 5432).

    CIDR sources are allowed only where no security group can name the caller: a load balancer's
    own group (clients are outside the VPC) and an interface endpoint's group (private CIDRs).
    Everything else must reference a security group, a prefix list or itself.
    """
    entries = [e for e in ingress_of(r) if e.cidrs]
    if not entries:
        return []
    groups = _owning_groups(r, ctx)
    users = {k: v for g in groups for k, v in _group_users(g, ctx).items() if v}
    if users.get("alb") or users.get("nlb"):
        return []
    problems = []
    for e in entries:
        if users.get("endpoint") and all(ipaddress.ip_network(c, strict=False).is_private for c in e.cidrs):
            continue
        problems.append(f"{r.name}: ingress {e.protocol}/{e.from_port}-{e.to_port} from CIDR "
                        f"{list(e.cidrs)}; reference the caller's security group instead")
    return problems


# ------------------------------------------------------------------------------------------------
# ECS


def container_definitions(r: Any) -> list[dict[str, Any]]:
    document = parse_json(r, get(r, "containerDefinitions", allow_unknown=True), f"{r.name}.containerDefinitions")
    return [c for c in as_list(document) if isinstance(c, Mapping)]


SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL|REGISTERED_USERS",
                         re.IGNORECASE)
# Names that carry a *reference* to a secret, not the secret.
SECRET_REFERENCE_NAME = re.compile(r"(_ARN|_ID|_NAME|_REF|_PATH|_FILE)$", re.IGNORECASE)
SECRET_VALUE = re.compile(
    re.escape(PLACEHOLDER_SECRET)
    + r"|AKIA[0-9A-Z]{16}"                      # AWS access key id
    + r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    + r"|[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"  # URL with user:password@
    + r"|\"[Pp]assword\"\s*:\s*\"[^\"]+\"")      # JSON with a password value


def env_secret_problems(owner: str, variables: Iterable[tuple[str, Any]]) -> list[str]:
    """Env vars that hold, or are named like, secret values (the value itself is never printed)."""
    problems = []
    for name, value in variables:
        text = "" if value is None else str(value)
        if SECRET_VALUE.search(text):
            problems.append(f"{owner}: env {name} holds a secret-looking value; inject it from "
                            f"Secrets Manager instead")
        elif (SECRET_NAME.search(name) and not SECRET_REFERENCE_NAME.search(name)
              and text.lower() not in ("", "true", "false") and not text.startswith("arn:")):
            problems.append(f"{owner}: env {name} looks like a secret; use ECS `secrets` / a Secrets "
                            f"Manager ARN instead of a plain value")
    return problems


def check_ecs_secrets_not_in_env(r: Any, ctx: Context) -> list[str]:
    """FSBP ECS.8: Secrets should not be passed as container environment variables."""
    problems = []
    for container in container_definitions(r):
        owner = f"{r.name}/{container.get('name', '?')}"
        pairs = [(str(e.get("name", "")), e.get("value")) for e in as_list(container.get("environment"))
                 if isinstance(e, Mapping)]
        problems.extend(env_secret_problems(owner, pairs))
    return problems


def check_ecs_no_privileged(r: Any, ctx: Context) -> list[str]:
    """FSBP ECS.4: ECS containers should run as non-privileged."""
    return [f"{r.name}/{c.get('name', '?')}: privileged is true"
            for c in container_definitions(r) if _truthy(c.get("privileged"))]


def check_ecs_log_configuration(r: Any, ctx: Context) -> list[str]:
    """FSBP ECS.9: ECS task definitions should have a logging configuration."""
    containers = container_definitions(r)
    if not containers:
        return [f"{r.name}: no container definitions"]
    return [f"{r.name}/{c.get('name', '?')}: no logConfiguration.logDriver"
            for c in containers if not (c.get("logConfiguration") or {}).get("logDriver")]


def check_ecs_container_insights(r: Any, ctx: Context) -> list[str]:
    """FSBP ECS.12: ECS clusters should use Container Insights."""
    for setting in as_list(get(r, "settings")):
        if isinstance(setting, Mapping) and setting.get("name") == "containerInsights" \
                and setting.get("value") in ("enabled", "enhanced"):
            return []
    return [f"{r.name}: containerInsights is not enabled"]


def check_ecs_no_public_ip(r: Any, ctx: Context) -> list[str]:
    """FSBP ECS.2: ECS services should not have public IP addresses assigned automatically."""
    if _truthy(get(r, "networkConfiguration", "assignPublicIp")):
        return [f"{r.name}: networkConfiguration.assignPublicIp is true (tasks belong in private subnets)"]
    return []


def check_ecs_private_subnets(r: Any, ctx: Context) -> list[str]:
    """docs/architecture.md floor ("private subnets for tasks"): a service's subnets are none of the subnets an
    internet-facing load balancer of the stack sits in (those are the public ones)."""
    subnets = {str(s) for s in as_list(get(r, "networkConfiguration", "subnets", allow_unknown=True))}
    if not subnets or UNKNOWN in subnets:
        return [] if subnets else [f"{r.name}: networkConfiguration.subnets is empty"]
    public: set[str] = set()
    for lb in ctx.resources:
        if lb.type in LOAD_BALANCERS and not _truthy(get(lb, "internal", allow_unknown=True)):
            public.update(str(s) for s in as_list(get(lb, "subnets", allow_unknown=True)))
    shared = sorted(subnets & public)
    return [f"{r.name}: runs in {shared}, where an internet-facing load balancer sits (public subnets)"] \
        if shared else []


def check_ecs_fargate_platform(r: Any, ctx: Context) -> list[str]:
    """FSBP ECS.10: ECS Fargate services should run on the latest Fargate platform version."""
    version = get(r, "platformVersion")
    if version not in (None, "", "LATEST"):
        return [f"{r.name}: platformVersion pinned to {version!r}; use LATEST"]
    return []


def _is_fargate(r: Any, ctx: Context) -> bool:
    if get(r, "launchType") == "FARGATE":
        return True
    strategies = as_list(get(r, "capacityProviderStrategies"))
    return any(isinstance(s, Mapping) and str(s.get("capacityProvider", "")).startswith("FARGATE")
               for s in strategies)


# ------------------------------------------------------------------------------------------------
# KMS, logs, secrets


def check_kms_rotation(r: Any, ctx: Context) -> list[str]:
    """FSBP KMS.4: AWS KMS key rotation should be enabled (symmetric keys)."""
    spec = get(r, "customerMasterKeySpec") or get(r, "keySpec") or "SYMMETRIC_DEFAULT"
    if spec == "SYMMETRIC_DEFAULT" and not _truthy(get(r, "enableKeyRotation")):
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


# ------------------------------------------------------------------------------------------------
# IAM


def _policy_documents(r: Any) -> list[tuple[str, Any]]:
    if r.type in IAM_ROLES:
        docs = []
        for i, inline in enumerate(as_list(get(r, "inlinePolicies"))):
            if isinstance(inline, Mapping):
                docs.append((f"{r.name}/inline[{inline.get('name', i)}]",
                             parse_json(r, inline.get("policy"), f"inlinePolicies[{i}].policy")))
        return docs
    return [(r.name, parse_json(r, get(r, "policy", allow_unknown=True), "policy"))]


def check_iam_no_wildcard_admin(r: Any, ctx: Context) -> list[str]:
    """FSBP IAM.1: IAM policies should not allow full "*" administrative privileges."""
    problems = []
    for owner, document in _policy_documents(r):
        for statement in _statements(document):
            if statement.get("Effect") != "Allow":
                continue
            actions = set(as_list(statement.get("Action")))
            resources = set(as_list(statement.get("Resource")))
            if actions & {"*", "*:*"} and "*" in resources:
                problems.append(f"{owner}: allows Action * on Resource *")
            elif "NotAction" in statement and "*" in resources:
                problems.append(f"{owner}: Allow with NotAction on Resource * grants near-admin rights")
    return problems


FULL_ACCESS_POLICY = re.compile(r"FullAccess|AdministratorAccess|PowerUserAccess|IAMFullAccess", re.IGNORECASE)


def check_iam_no_full_access(r: Any, ctx: Context) -> list[str]:
    """docs/architecture.md floor / FSBP IAM.21-style least privilege: no ``*FullAccess`` managed policies."""
    arns = [*as_list(get(r, "managedPolicyArns")), *as_list(get(r, "policyArn")), *as_list(get(r, "policyArns"))]
    return [f"{r.name}: attaches {arn}; write a least-privilege policy instead"
            for arn in arns if isinstance(arn, str) and FULL_ACCESS_POLICY.search(arn.rsplit("/", 1)[-1])]


def check_iam_trust_no_wildcard(r: Any, ctx: Context) -> list[str]:
    """Project floor: a role's trust policy names its principals (no ``*``), or anyone could assume it."""
    document = parse_json(r, get(r, "assumeRolePolicy", allow_unknown=True), "assumeRolePolicy")
    problems = []
    for statement in _statements(document):
        if statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal")
        if isinstance(principal, Mapping):
            values = [v for vals in principal.values() for v in as_list(vals)]
        else:
            values = as_list(principal)
        if "*" in values:
            problems.append(f"{r.name}: trust policy allows Principal *")
    return problems


# ------------------------------------------------------------------------------------------------
# Lambda


def check_lambda_in_vpc(r: Any, ctx: Context) -> list[str]:
    """FSBP Lambda.3: Lambda functions should be in a VPC (private subnets, SG to Orthanc)."""
    if not as_list(get(r, "vpcConfig", "subnetIds", allow_unknown=True)) \
            or not as_list(get(r, "vpcConfig", "securityGroupIds", allow_unknown=True)):
        return [f"{r.name}: vpcConfig needs subnetIds and securityGroupIds"]
    return []


# Oldest runtimes accepted per language (Lambda's deprecation calendar, 2026).
LAMBDA_MIN_RUNTIME = {"python": (3, 12), "nodejs": (20,)}


def check_lambda_runtime(r: Any, ctx: Context) -> list[str]:
    """FSBP Lambda.2: Lambda functions should use supported runtimes (python3.12+, nodejs20.x+)."""
    if get(r, "packageType") == "Image":
        return []
    runtime = str(get(r, "runtime") or "")
    match = re.fullmatch(r"([a-z]+)(\d+(?:\.\d+)*)(?:\.x)?", runtime)
    if not match or match.group(1) not in LAMBDA_MIN_RUNTIME:
        return [f"{r.name}: runtime {runtime!r} is not a supported python/nodejs runtime"]
    version = tuple(int(p) for p in match.group(2).split("."))
    floor = LAMBDA_MIN_RUNTIME[match.group(1)]
    if version[:len(floor)] < floor:
        return [f"{r.name}: runtime {runtime} is older than {match.group(1)}{'.'.join(map(str, floor))}"]
    return []


def check_lambda_env_secrets(r: Any, ctx: Context) -> list[str]:
    """FSBP Lambda / docs/architecture.md floor: no secret values in Lambda environment variables
    (pass the secret's ARN and read it at run time)."""
    variables = get(r, "environment", "variables") or {}
    if not isinstance(variables, Mapping):
        return []
    return env_secret_problems(r.name, variables.items())


def check_lambda_tracing(r: Any, ctx: Context) -> list[str]:
    """AWSGuard lambda-function-tracing-enabled: X-Ray active tracing."""
    if get(r, "tracingConfig", "mode") != "Active":
        return [f"{r.name}: tracingConfig.mode is not Active"]
    return []


def check_lambda_permission(r: Any, ctx: Context) -> list[str]:
    """FSBP Lambda.1: Lambda function policies should prohibit public access; a service principal
    needs sourceArn or sourceAccount (confused deputy)."""
    principal = str(get(r, "principal") or "")
    if principal == "*":
        return [f"{r.name}: grants invoke to Principal *"]
    if principal.endswith(".amazonaws.com") and not (present(r, "sourceArn") or present(r, "sourceAccount")):
        return [f"{r.name}: service principal {principal} without sourceArn/sourceAccount"]
    return []


# ------------------------------------------------------------------------------------------------
# SageMaker notebook


def check_notebook_direct_internet(r: Any, ctx: Context) -> list[str]:
    """FSBP SageMaker.1 (no direct internet access, prod) and SageMaker.2 (in a custom VPC, always)."""
    problems = []
    if not present(r, "subnetId"):
        problems.append(f"{r.name}: no subnetId (must run in a private subnet)")
    if ctx.prod and get(r, "directInternetAccess") != "Disabled":
        problems.append(f"{r.name}: directInternetAccess is not Disabled in prod")
    return problems


def check_notebook_root_access(r: Any, ctx: Context) -> list[str]:
    """FSBP SageMaker.3: users should not have root access to notebook instances
    (lifecycle configurations still run as root)."""
    if get(r, "rootAccess") != "Disabled":
        return [f"{r.name}: rootAccess is not Disabled"]
    return []


def check_notebook_kms(r: Any, ctx: Context) -> list[str]:
    """AWSGuard sagemaker-notebook-instance-kms-key-configured: ML storage volume encrypted with a CMK."""
    if not present(r, "kmsKeyId"):
        return [f"{r.name}: kmsKeyId is not set"]
    return []


# ------------------------------------------------------------------------------------------------
# CloudFront (the viewer asset location)


def _cache_behaviors(r: Any) -> list[tuple[str, Mapping[str, Any]]]:
    behaviors = [("defaultCacheBehavior", get(r, "defaultCacheBehavior") or {})]
    behaviors += [(f"orderedCacheBehaviors[{i}]", b) for i, b in enumerate(as_list(get(r, "orderedCacheBehaviors")))
                  if isinstance(b, Mapping)]
    return behaviors


def check_cloudfront_viewer_https(r: Any, ctx: Context) -> list[str]:
    """FSBP CloudFront.3: CloudFront distributions should require encryption in transit
    (every cache behavior's viewerProtocolPolicy is redirect-to-https or https-only)."""
    return [f"{r.name}: {where}.viewerProtocolPolicy is {b.get('viewerProtocolPolicy')!r}, "
            f"needs redirect-to-https or https-only"
            for where, b in _cache_behaviors(r)
            if b.get("viewerProtocolPolicy") not in ("redirect-to-https", "https-only")]


# CloudFront security policies with TLS 1.2 as the floor (TLSv1.2_2018 and older admit weaker ciphers).
CLOUDFRONT_TLS_POLICIES = ("TLSv1.2_2021", "TLSv1.2_2025", "TLSv1.3_2025")


def check_cloudfront_tls_floor(r: Any, ctx: Context) -> list[str]:
    """FSBP CloudFront.7/CloudFront.8 spirit + docs/architecture.md floor: a custom certificate is served by
    SNI with a TLS 1.2_2021+ security policy. The *.cloudfront.net default certificate's policy is
    fixed by AWS and cannot be raised; it is accepted for the public viewer bundle."""
    cert = get(r, "viewerCertificate") or {}
    if not isinstance(cert, Mapping):
        return [f"{r.name}: no viewerCertificate"]
    if _truthy(cert.get("cloudfrontDefaultCertificate")) and not cert.get("acmCertificateArn"):
        return []
    problems = []
    if cert.get("minimumProtocolVersion") not in CLOUDFRONT_TLS_POLICIES:
        problems.append(f"{r.name}: minimumProtocolVersion {cert.get('minimumProtocolVersion')!r} is below "
                        f"TLSv1.2_2021")
    if cert.get("sslSupportMethod") != "sni-only":
        problems.append(f"{r.name}: sslSupportMethod {cert.get('sslSupportMethod')!r}; use sni-only")
    return problems


def _is_s3_origin(origin: Mapping[str, Any]) -> bool:
    return ".s3." in str(origin.get("domainName", "")) or ".s3-" in str(origin.get("domainName", ""))


def check_cloudfront_origin_access_control(r: Any, ctx: Context) -> list[str]:
    """FSBP CloudFront.13: CloudFront distributions should use origin access control (S3 origins);
    the OAC signs always with SigV4 (no legacy origin access identity, no unsigned requests)."""
    problems = []
    for i, origin in enumerate(as_list(get(r, "origins"))):
        if not isinstance(origin, Mapping) or not _is_s3_origin(origin):
            continue
        where = f"{r.name}: origins[{i}] ({origin.get('originId')})"
        if (origin.get("s3OriginConfig") or {}).get("originAccessIdentity"):
            problems.append(f"{where} uses a legacy origin access identity; use origin access control")
        if not origin.get("originAccessControlId"):
            problems.append(f"{where} has no originAccessControlId")
    controls = ctx.targets(r, "origins", ORIGIN_ACCESS_CONTROLS)
    if any(isinstance(o, Mapping) and _is_s3_origin(o) and o.get("originAccessControlId")
           for o in as_list(get(r, "origins"))):
        if not controls:
            problems.append(f"{r.name}: its origin access control is not declared in this stack")
        for oac in controls:
            if get(oac, "signingBehavior") != "always" or get(oac, "signingProtocol") != "sigv4":
                problems.append(f"{r.name}: origin access control {oac.name} signs "
                                f"{get(oac, 'signingBehavior')!r}/{get(oac, 'signingProtocol')!r}, needs always/sigv4")
    return problems


def check_cloudfront_cors_origins(r: Any, ctx: Context) -> list[str]:
    """Project floor: a response-headers policy's CORS names https origins (never ``*``), and sends HSTS
    and nosniff (the viewer bundle is loaded cross-origin by the GT worker portal)."""
    problems = []
    cors = get(r, "corsConfig") or {}
    origins = ((cors.get("accessControlAllowOrigins") or {}).get("items") if isinstance(cors, Mapping) else None)
    for origin in as_list(origins):
        if origin == "*" or not str(origin).startswith("https://"):
            problems.append(f"{r.name}: CORS allows origin {origin!r}; name https:// origins")
    if isinstance(cors, Mapping) and _truthy(cors.get("accessControlAllowCredentials")):
        problems.append(f"{r.name}: CORS allows credentials; the public bundle needs none")
    security = get(r, "securityHeadersConfig") or {}
    if not (security.get("strictTransportSecurity") if isinstance(security, Mapping) else None):
        problems.append(f"{r.name}: no Strict-Transport-Security header")
    if not (security.get("contentTypeOptions") if isinstance(security, Mapping) else None):
        problems.append(f"{r.name}: no X-Content-Type-Options: nosniff header")
    return problems


def check_bucket_policy_not_public(r: Any, ctx: Context) -> list[str]:
    """FSBP S3.2/S3.3 (no public read/write) as policy text: no Allow to Principal ``*``, and an Allow to
    the CloudFront service principal names its distribution (AWS:SourceArn), as OAC requires."""
    document = parse_json(r, get(r, "policy", allow_unknown=True), f"{r.name}.policy")
    problems = []
    for i, statement in enumerate(_statements(document)):
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


# ------------------------------------------------------------------------------------------------
# ALB listener rules and Cognito (the portal's sign-in)


AUTHENTICATE_ACTIONS = ("authenticate-cognito", "authenticate-oidc")


def _action_order(action: Mapping[str, Any], position: int) -> float:
    order = action.get("order")
    return float(order) if isinstance(order, (int, float)) and not isinstance(order, bool) else 1e6 + position


def _is_portal_rule(r: Any, ctx: Context) -> bool:
    for condition in as_list(get(r, "conditions")):
        values = (condition.get("pathPattern") or {}).get("values") if isinstance(condition, Mapping) else None
        if any(str(v).startswith("/portal") for v in as_list(values)):
            return True
    return any(isinstance(a, Mapping) and a.get("type") in AUTHENTICATE_ACTIONS for a in as_list(get(r, "actions")))


def check_listener_rule_authenticates(r: Any, ctx: Context) -> list[str]:
    """docs/architecture.md floor (portal behind ALB sign-in): a rule for ``/portal`` paths (or any rule with an
    authenticate action) authenticates before it forwards, refuses unauthenticated requests, and sits
    on an HTTPS listener (the only kind where AWS runs authenticate actions)."""
    actions = [(i, a) for i, a in enumerate(as_list(get(r, "actions"))) if isinstance(a, Mapping)]
    ordered = sorted(actions, key=lambda pa: _action_order(pa[1], pa[0]))
    types = [a.get("type") for _, a in ordered]
    problems = []
    auth = [a for _, a in ordered if a.get("type") in AUTHENTICATE_ACTIONS]
    if not auth:
        problems.append(f"{r.name}: no authenticate-cognito/oidc action before forwarding {types}")
    else:
        first_auth = types.index(auth[0].get("type"))
        forwards = [i for i, t in enumerate(types) if t == "forward"]
        if forwards and forwards[0] < first_auth:
            problems.append(f"{r.name}: actions run {types}; authenticate must come before forward")
        for action in auth:
            config = action.get("authenticateCognito") or action.get("authenticateOidc") or {}
            if isinstance(config, Mapping) and config.get("onUnauthenticatedRequest") == "allow":
                problems.append(f"{r.name}: onUnauthenticatedRequest is allow (anonymous requests pass)")
    for listener in ctx.targets(r, "listenerArn", LISTENERS):
        if str(get(listener, "protocol") or "").upper() != "HTTPS":
            problems.append(f"{r.name}: on {listener.name} ({get(listener, 'protocol')}); authenticate actions "
                            f"need an HTTPS listener")
    return problems


COGNITO_MIN_PASSWORD_LENGTH = 12


def check_cognito_password_policy(r: Any, ctx: Context) -> list[str]:
    """FSBP-style identity floor (CIS/NIST 800-63B lengths): at least 12 characters, all four
    character classes, temporary passwords valid at most 7 days."""
    policy = get(r, "passwordPolicy") or {}
    if not isinstance(policy, Mapping):
        return [f"{r.name}: no passwordPolicy"]
    problems = []
    length = as_int(policy.get("minimumLength"))
    if length is None or length < COGNITO_MIN_PASSWORD_LENGTH:
        problems.append(f"{r.name}: minimumLength {length!r} is below {COGNITO_MIN_PASSWORD_LENGTH}")
    missing = [k for k in ("requireLowercase", "requireUppercase", "requireNumbers", "requireSymbols")
               if not _truthy(policy.get(k))]
    if missing:
        problems.append(f"{r.name}: password policy does not set {', '.join(missing)}")
    days = as_int(policy.get("temporaryPasswordValidityDays"))
    if days is None or days > 7:
        problems.append(f"{r.name}: temporaryPasswordValidityDays {days!r} exceeds 7")
    return problems


def check_cognito_admin_only_sign_up(r: Any, ctx: Context) -> list[str]:
    """docs/architecture.md floor: annotators are invited, never self-registered (AllowAdminCreateUserOnly)."""
    if not _truthy(get(r, "adminCreateUserConfig", "allowAdminCreateUserOnly")):
        return [f"{r.name}: adminCreateUserConfig.allowAdminCreateUserOnly is not true (anyone could sign up)"]
    return []


def check_cognito_mfa_prod(r: Any, ctx: Context) -> list[str]:
    """FSBP/CIS identity floor: multi-factor authentication required in prod (TOTP enabled)."""
    problems = []
    if get(r, "mfaConfiguration") != "ON":
        problems.append(f"{r.name}: mfaConfiguration is {get(r, 'mfaConfiguration')!r}, needs ON in prod")
    if not _truthy(get(r, "softwareTokenMfaConfiguration", "enabled")):
        problems.append(f"{r.name}: software-token (TOTP) MFA is not enabled")
    return problems


def check_cognito_threat_protection(r: Any, ctx: Context) -> list[str]:
    """FSBP Cognito.1: user pools should have threat protection in full-function enforcement mode."""
    if get(r, "userPoolAddOns", "advancedSecurityMode") != "ENFORCED":
        return [f"{r.name}: userPoolAddOns.advancedSecurityMode is "
                f"{get(r, 'userPoolAddOns', 'advancedSecurityMode')!r}, needs ENFORCED"]
    return []


def check_ecs_secrets_from_secrets_manager(r: Any, ctx: Context) -> list[str]:
    """docs/architecture.md floor ("secrets only in Secrets Manager"): every container ``secrets`` entry is a
    Secrets Manager ARN (optionally with a JSON key), never a literal or another store."""
    problems = []
    for container in container_definitions(r):
        for entry in as_list(container.get("secrets")):
            if not isinstance(entry, Mapping):
                continue
            source = str(entry.get("valueFrom", ""))
            if not re.match(r"arn:aws[a-z-]*:secretsmanager:", source):
                problems.append(f"{r.name}/{container.get('name', '?')}: secret {entry.get('name')} comes from "
                                f"{source.split(':secret:')[0][:40]!r}, not a Secrets Manager ARN")
    return problems


# ------------------------------------------------------------------------------------------------
# ECR (the portal image)


def check_ecr_scan_on_push(r: Any, ctx: Context) -> list[str]:
    """FSBP ECR.1: ECR private repositories should have image scanning configured (scan on push)."""
    if not _truthy(get(r, "imageScanningConfiguration", "scanOnPush")):
        return [f"{r.name}: imageScanningConfiguration.scanOnPush is not true"]
    return []


def check_ecr_lifecycle_policy(r: Any, ctx: Context) -> list[str]:
    """FSBP ECR.3: ECR repositories should have at least one lifecycle policy configured."""
    if ctx.referrers(r, ECR_LIFECYCLE_POLICIES, "repository"):
        return []
    return [f"{r.name}: no LifecyclePolicy refers to this repository"]


# ------------------------------------------------------------------------------------------------
# VPC


def check_vpc_flow_logs(vpc: Any, ctx: Context) -> list[str]:
    """FSBP EC2.6: VPC flow logging should be enabled in all VPCs."""
    if ctx.referrers(vpc, FLOW_LOGS, "vpcId"):
        return []
    return [f"{vpc.name}: no FlowLog refers to this VPC"]


# ------------------------------------------------------------------------------------------------
# The rule table


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
         applies=_prod),
    Rule("rds-multi-az", "RDS is Multi-AZ in prod",
         RDS_INSTANCES, check_rds_multi_az, "FSBP RDS.5", severity="medium", applies=_prod),
    Rule("rds-auto-minor-version-upgrade", "RDS applies minor version upgrades",
         RDS_INSTANCES, check_rds_auto_minor_version_upgrade, "FSBP RDS.13", severity="medium"),
    Rule("rds-engine-version-supported", "RDS PostgreSQL major in standard support",
         RDS_INSTANCES, check_rds_engine_version, "docs/architecture.md: current PostgreSQL major", severity="medium"),
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
    Rule("alb-http-to-https-redirection", "ALB HTTP listeners only redirect to HTTPS (unless allowHttp)",
         LISTENERS, check_alb_http_redirect, "FSBP ELB.1", selects=_is_http_listener),
    Rule("alb-https-tls-policy", "TLS listeners use a modern TLS 1.3 policy and a certificate",
         LISTENERS, check_alb_tls_policy, "FSBP ELB.17", selects=_is_tls_listener),
    Rule("alb-drop-invalid-headers", "ALB drops invalid HTTP headers",
         LOAD_BALANCERS, check_alb_drop_invalid_headers, "FSBP ELB.4", severity="medium", selects=_is_alb),
    Rule("alb-access-logs-enabled", "ALB access logs enabled",
         LOAD_BALANCERS, check_alb_access_logs, "FSBP ELB.5", severity="medium", selects=_is_alb),
    Rule("elb-deletion-protection", "Load balancer deletion protection on in prod",
         LOAD_BALANCERS, check_elb_deletion_protection, "FSBP ELB.6", severity="low", applies=_prod),
    Rule("no-unrestricted-ingress", "No 0.0.0.0/0 or ::/0 ingress except the ALB on 80/443",
         SECURITY_GROUPS + SG_RULES + SG_INGRESS_RULES, check_no_unrestricted_ingress,
         "FSBP EC2.18 / EC2.19", scope="stack", severity="critical"),
    Rule("security-group-ingress-named-source", "Ingress names the source security group",
         SECURITY_GROUPS + SG_RULES + SG_INGRESS_RULES, check_ingress_named_source,
         "docs/architecture.md security posture", scope="stack"),
    Rule("ecs-service-no-public-ip", "ECS services get no public IP",
         ECS_SERVICES, check_ecs_no_public_ip, "FSBP ECS.2"),
    Rule("ecs-service-private-subnets", "ECS services run in private subnets (not the load balancers' public ones)",
         ECS_SERVICES, check_ecs_private_subnets, "docs/architecture.md security posture", scope="stack"),
    Rule("ecs-fargate-latest-platform", "Fargate services on the LATEST platform version",
         ECS_SERVICES, check_ecs_fargate_platform, "FSBP ECS.10", severity="low", selects=_is_fargate),
    Rule("ecs-task-no-privileged", "ECS containers are not privileged",
         ECS_TASK_DEFINITIONS, check_ecs_no_privileged, "FSBP ECS.4"),
    Rule("ecs-secrets-not-in-env", "No secrets in ECS container environment (use `secrets`)",
         ECS_TASK_DEFINITIONS, check_ecs_secrets_not_in_env, "FSBP ECS.8", severity="critical"),
    Rule("ecs-task-log-configuration", "ECS containers log to a configured driver",
         ECS_TASK_DEFINITIONS, check_ecs_log_configuration, "FSBP ECS.9", severity="medium"),
    Rule("ecs-container-insights", "ECS clusters use Container Insights",
         ECS_CLUSTERS, check_ecs_container_insights, "FSBP ECS.12", severity="low"),
    Rule("kms-key-rotation-enabled", "KMS keys rotate yearly",
         KMS_KEYS, check_kms_rotation, "FSBP KMS.4", severity="medium"),
    Rule("cloudwatch-log-group-retention", "Log groups have a retention (>= 7 dev, >= 365 prod)",
         LOG_GROUPS, check_log_group_retention, "FSBP CloudWatch.16", severity="low"),
    Rule("cloudwatch-log-group-encrypted", "Log groups encrypted with the project KMS key",
         LOG_GROUPS, check_log_group_encrypted, "AWSGuard cloudwatch-log-group-encrypted", severity="medium"),
    Rule("secretsmanager-kms", "Secrets encrypted with the project KMS key",
         SECRETS, check_secret_kms, "AWSGuard secretsmanager-secret-encrypted-with-cmk", severity="medium"),
    Rule("iam-no-wildcard-admin", "No IAM policy allows * on *",
         IAM_POLICY_HOLDERS, check_iam_no_wildcard_admin, "FSBP IAM.1", severity="critical"),
    Rule("iam-no-full-access-managed-policies", "No *FullAccess / admin managed policies attached",
         IAM_ROLES + IAM_ATTACHMENTS, check_iam_no_full_access, "docs/architecture.md security posture"),
    Rule("iam-role-trust-no-wildcard-principal", "Role trust policies name their principals",
         IAM_ROLES, check_iam_trust_no_wildcard, "docs/architecture.md security posture", severity="critical"),
    Rule("lambda-inside-vpc", "Lambda functions run in the VPC",
         LAMBDAS, check_lambda_in_vpc, "FSBP Lambda.3", severity="medium"),
    Rule("lambda-runtime-supported", "Lambda runtimes are current (python3.12+)",
         LAMBDAS, check_lambda_runtime, "FSBP Lambda.2", severity="medium"),
    Rule("lambda-env-no-secrets", "No secrets in Lambda environment variables",
         LAMBDAS, check_lambda_env_secrets, "docs/architecture.md security posture", severity="critical"),
    Rule("lambda-tracing", "Lambda X-Ray tracing active",
         LAMBDAS, check_lambda_tracing, "AWSGuard lambda-function-tracing-enabled", severity="low"),
    Rule("lambda-function-public-access-prohibited", "Lambda permissions are not public",
         LAMBDA_PERMISSIONS, check_lambda_permission, "FSBP Lambda.1", severity="critical"),
    Rule("sagemaker-notebook-no-direct-internet", "Notebook in a private subnet; no direct internet in prod",
         NOTEBOOKS, check_notebook_direct_internet, "FSBP SageMaker.1 / SageMaker.2"),
    Rule("sagemaker-notebook-root-access-disabled", "Notebook users have no root access",
         NOTEBOOKS, check_notebook_root_access, "FSBP SageMaker.3", severity="medium"),
    Rule("sagemaker-notebook-kms", "Notebook volume encrypted with the project KMS key",
         NOTEBOOKS, check_notebook_kms, "AWSGuard sagemaker-notebook-instance-kms-key-configured",
         severity="medium"),
    Rule("vpc-flow-logs-enabled", "Every VPC has flow logs",
         VPCS, check_vpc_flow_logs, "FSBP EC2.6", scope="stack", severity="medium"),
    Rule("cloudfront-viewer-https", "CloudFront serves viewers over HTTPS only (HTTP redirects)",
         DISTRIBUTIONS, check_cloudfront_viewer_https, "FSBP CloudFront.3"),
    Rule("cloudfront-tls-floor", "CloudFront custom certificates use SNI and TLSv1.2_2021 or newer",
         DISTRIBUTIONS, check_cloudfront_tls_floor, "FSBP CloudFront.8 / docs/architecture.md TLS floor",
         severity="medium"),
    Rule("cloudfront-origin-access-control", "CloudFront reads S3 through OAC (SigV4, always signed)",
         DISTRIBUTIONS, check_cloudfront_origin_access_control, "FSBP CloudFront.13", scope="stack"),
    Rule("cloudfront-response-headers", "CloudFront CORS names https origins; HSTS and nosniff are sent",
         RESPONSE_HEADERS_POLICIES, check_cloudfront_cors_origins, "docs/architecture.md security posture",
         severity="medium"),
    Rule("s3-bucket-policy-not-public", "Bucket policies allow no public principal; CloudFront only per distribution",
         BUCKET_POLICIES, check_bucket_policy_not_public, "FSBP S3.2 / S3.3", severity="critical"),
    Rule("alb-listener-rule-authenticates", "Portal listener rules authenticate (Cognito/OIDC) before forwarding",
         LISTENER_RULES, check_listener_rule_authenticates, "docs/architecture.md security posture", scope="stack",
         severity="critical", selects=_is_portal_rule),
    Rule("cognito-password-policy", "Cognito passwords: 12+ characters, four classes, short-lived temporaries",
         USER_POOLS, check_cognito_password_policy, "CIS / NIST SP 800-63B password floor"),
    Rule("cognito-admin-only-sign-up", "Cognito users are created by an admin only (no self sign-up)",
         USER_POOLS, check_cognito_admin_only_sign_up, "docs/architecture.md security posture", severity="critical"),
    Rule("cognito-mfa-required", "Cognito requires MFA (TOTP) in prod",
         USER_POOLS, check_cognito_mfa_prod, "CIS identity floor (MFA)", applies=_prod),
    Rule("cognito-threat-protection", "Cognito threat protection in enforced mode",
         USER_POOLS, check_cognito_threat_protection, "FSBP Cognito.1", severity="medium"),
    Rule("ecs-secrets-from-secrets-manager", "ECS secrets come from Secrets Manager ARNs",
         ECS_TASK_DEFINITIONS, check_ecs_secrets_from_secrets_manager, "docs/architecture.md security posture"),
    Rule("ecr-image-scan-on-push", "ECR repositories scan images on push",
         ECR_REPOSITORIES, check_ecr_scan_on_push, "FSBP ECR.1", severity="medium"),
    Rule("ecr-lifecycle-policy", "ECR repositories have a lifecycle policy",
         ECR_REPOSITORIES, check_ecr_lifecycle_policy, "FSBP ECR.3", scope="stack", severity="low"),
)

RULES_BY_ID: dict[str, Rule] = {rule.id: rule for rule in RULES}
assert len(RULES_BY_ID) == len(RULES), "duplicate rule id"


# ------------------------------------------------------------------------------------------------
# Links between resources


IDENTIFIER_KEYS = ("id", "arn", "bucket", "keyId", "vpcId", "name")
SKIP_LINK_KEYS = {"tags", "tagsAll", "description"}


def identifiers_from_props(r: Any) -> set[str]:
    """Strings other resources may use to refer to ``r``: its id, ARN, name, bucket, key id…"""
    ids: set[str] = set()
    for key in IDENTIFIER_KEYS:
        value = r.inputs.get(key) if isinstance(r.inputs, Mapping) else None
        if isinstance(value, str) and value and value != UNKNOWN:
            ids.add(value)
            # ec2/kms ARNs end in the id other resources use (…:security-group/sg-123, …:key/abc).
            if key == "arn" and (":ec2:" in value or ":kms:" in value) and "/" in value:
                ids.add(value.rsplit("/", 1)[-1])
    return ids


def mocked_identifiers(region: str = "us-east-1") -> Callable[[Any], set[str]]:
    """Identifiers of a recorded resource as the mocks (components/offline.py) answered them."""
    from components.offline import _mock_state  # the one place mocked ids are formed

    def identifiers(r: Any) -> set[str]:
        state = _mock_state(r.type, r.name, dict(r.inputs), region)
        return identifiers_from_props(_Props(r.type, r.name, state)) | identifiers_from_props(r)

    return identifiers


@dataclass
class _Props:
    type: str
    name: str
    inputs: dict[str, Any]


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _strings(value)


def link_index(resources: Sequence[Any], identifiers: Callable[[Any], set[str]],
               dependencies: Optional[Mapping[int, Mapping[str, Iterable[int]]]] = None,
               ) -> dict[int, dict[str, frozenset[int]]]:
    """Which resources each resource's top-level inputs refer to, by value and by dependency."""
    owners: dict[str, set[int]] = {}
    for i, r in enumerate(resources):
        for ident in identifiers(r):
            owners.setdefault(ident, set()).add(i)
    links: dict[int, dict[str, set[int]]] = {}
    for i, r in enumerate(resources):
        for key, value in (r.inputs or {}).items():
            if key in SKIP_LINK_KEYS:
                continue
            for text in _strings(value):
                for j in owners.get(text, ()):
                    if j != i:
                        links.setdefault(i, {}).setdefault(key, set()).add(j)
    for i, by_key in (dependencies or {}).items():
        for key, targets in by_key.items():
            links.setdefault(i, {}).setdefault(key, set()).update(j for j in targets if j != i)
    return {i: {k: frozenset(v) for k, v in by_key.items()} for i, by_key in links.items()}


def build_context(resources: Sequence[Any], *, environment: str = "dev", allow_http: bool = False,
                  stack: str = "", identifiers: Optional[Callable[[Any], set[str]]] = None,
                  dependencies: Optional[Mapping[int, Mapping[str, Iterable[int]]]] = None) -> Context:
    """A :class:`Context` over ``resources`` with the link index built from their identifiers."""
    resources = tuple(resources)
    links = link_index(resources, identifiers or identifiers_from_props, dependencies)
    return Context(environment=environment, allow_http=allow_http, stack=stack,
                   resources=resources, links=links)


# ------------------------------------------------------------------------------------------------
# Running rules


def subjects(rule: Rule, ctx: Context) -> list[Any]:
    """The resources ``rule`` judges in this context (empty: not applicable)."""
    if not rule.applies(ctx):
        return []
    return [r for r in ctx.resources if r.type in rule.resource_types and rule.selects(r, ctx)]


def run_rule(rule: Rule, resource: Any, ctx: Context) -> list[str]:
    """Violations of ``rule`` by ``resource``; an unknown (preview) value is reported as one."""
    try:
        return list(rule.check(resource, ctx))
    except UnknownValue as exc:
        return [f"cannot evaluate: {exc}"]


def evaluate_context(ctx: Context, rules: Sequence[Rule] = RULES) -> list[RuleResult]:
    results = []
    for rule in rules:
        judged = subjects(rule, ctx)
        violations = [v for r in judged for v in run_rule(rule, r, ctx)]
        status = "n/a" if not judged else ("fail" if violations else "pass")
        results.append(RuleResult(rule.id, status, tuple(violations), len(judged),
                                  rule.description, rule.control))
    return results


def context_for_recording(recording: Any, config: Any = None) -> Context:
    """Context for a :class:`components.offline.Recording` and its stack's :class:`StackConfig`."""
    if config is None:
        from components.config import StackConfig
        from components.offline import stack_config_values
        config = StackConfig.from_mapping(stack_config_values(recording.stack), stack=recording.stack)
    return build_context(recording.resources, environment=config.environment,
                         allow_http=bool(config.allow_http), stack=recording.stack,
                         identifiers=mocked_identifiers(config.region))


def evaluate(recording: Any, config: Any = None, rules: Sequence[Rule] = RULES) -> list[RuleResult]:
    """Run every rule over a recorded stack; each result is pass, fail or n/a."""
    return evaluate_context(context_for_recording(recording, config), rules)


def counts(results: Sequence[RuleResult]) -> dict[str, int]:
    tally = {"pass": 0, "fail": 0, "n/a": 0}
    for result in results:
        tally[result.status] += 1
    return tally
