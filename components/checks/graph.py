"""The resource graph the policy rules, the cost model and the plan read: shapes, type tokens,
readers, and the link index between resources.

Every rule reads a resource as ``.type``, ``.name`` and ``.inputs`` (camelCase wire names, plain
values), the shape of :class:`components.checks.offline.RecordedResource`. The same functions run in three
places, so a rule is never written twice:

* the unit tests, over the program run under mocks (:func:`components.checks.rules.evaluate`);
* the offline plan (``make plan STACK=…``, :mod:`components.checks.plan`);
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
  resource's *mocked* id/arn (``components.checks.offline._mock_state``), so links are found by matching
  input values against every resource's identifiers; the policy pack adds Pulumi's property
  dependencies, which also hold during a preview when ids are still unknown.

A rule whose resource types do not occur in a stack is "not applicable" (``n/a``), never "passed".
"""

from __future__ import annotations

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

# Placeholder the mocks harness (components/checks/offline.py) puts in place of every secret config value
# and generated password: seeing it in an env var or policy means a secret leaked there.
try:  # the policy pack may run without PyYAML importable; the literal is the fallback.
    from components.checks.offline import PLACEHOLDER_SECRET
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


def statements(document: Any) -> list[dict[str, Any]]:
    if not isinstance(document, Mapping):
        return []
    return [s for s in as_list(document.get("Statement")) if isinstance(s, Mapping)]


def container_definitions(r: Any) -> list[dict[str, Any]]:
    """An ECS task definition's containers (the JSON document, parsed)."""
    document = parse_json(r, get(r, "containerDefinitions", allow_unknown=True), f"{r.name}.containerDefinitions")
    return [c for c in as_list(document) if isinstance(c, Mapping)]


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


def truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def falsy(value: Any) -> bool:
    return value is False or (isinstance(value, str) and value.lower() == "false")


def prod_only(ctx: Context) -> bool:
    return ctx.prod


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
    """Identifiers of a recorded resource as the mocks (components/checks/offline.py) answered them."""
    from components.checks.offline import _mock_state  # the one place mocked ids are formed

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
# Context of a recorded stack


def context_for_recording(recording: Any, config: Any = None) -> Context:
    """Context for a :class:`components.checks.offline.Recording` and its stack's :class:`StackConfig`."""
    if config is None:
        from components.config import StackConfig
        from components.checks.offline import stack_config_values
        config = StackConfig.from_mapping(stack_config_values(recording.stack), stack=recording.stack)
    return build_context(recording.resources, environment=config.environment,
                         allow_http=bool(config.allow_http), stack=recording.stack,
                         identifiers=mocked_identifiers(config.region))


