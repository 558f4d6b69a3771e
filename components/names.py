"""AWS name limits of the resources the program names, checked at preview for the actual stack name.

Names derive from the stack name (``da-<stack>-…``); a long stack name could push one past its
limit, which AWS would refuse only at ``pulumi up``, part-way through. :func:`check_generated_names`
runs as a stack transformation (``__main__.py``) and stops the preview on the first such name.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from components.config import ConfigError, camel_case

# Tag of functions that `pulumi up` invokes itself (components/portal.py): the cost model
# (components/checks/costs.py) prices them as deploy-time, not as the GT workload.
DEPLOY_TIME_TAG = ("dicom-annotate:invoked", "deploy-time")

# AWS name limits of the resource types this program names, by (type token: name property, limit).
# A name left to Pulumi gets "<logical name>-<7 hex>" (8 characters added). Sources: ELB
# CreateLoadBalancer/CreateTargetGroup (32), IAM quotas (role 64, inline policy 128), S3 bucket
# naming (63), Lambda CreateFunction (64) / PublishLayerVersion (140), RDS DBInstanceIdentifier
# (63), SageMaker CreateNotebookInstance / lifecycle configuration (63), Cognito (pool 128,
# domain prefix 63), ECR (256), ECS (255), CloudWatch alarm (255), CloudFront OAC (64).
NAME_LIMITS: dict[str, tuple[str, int]] = {
    "aws:lb/loadBalancer:LoadBalancer": ("name", 32),
    "aws:lb/targetGroup:TargetGroup": ("name", 32),
    "aws:iam/role:Role": ("name", 64),
    "aws:iam/rolePolicy:RolePolicy": ("name", 128),
    "aws:s3/bucket:Bucket": ("bucket", 63),
    "aws:lambda/function:Function": ("name", 64),
    "aws:lambda/layerVersion:LayerVersion": ("layer_name", 140),
    "aws:rds/instance:Instance": ("identifier", 63),
    "aws:rds/parameterGroup:ParameterGroup": ("name", 255),
    "aws:rds/subnetGroup:SubnetGroup": ("name", 255),
    "aws:sagemaker/notebookInstance:NotebookInstance": ("name", 63),
    "aws:sagemaker/notebookInstanceLifecycleConfiguration:NotebookInstanceLifecycleConfiguration": ("name", 63),
    "aws:cognito/userPool:UserPool": ("name", 128),
    "aws:cognito/userPoolClient:UserPoolClient": ("name", 128),
    "aws:cognito/userPoolDomain:UserPoolDomain": ("domain", 63),
    "aws:ecr/repository:Repository": ("name", 256),
    "aws:ecs/cluster:Cluster": ("name", 255),
    "aws:ecs/service:Service": ("name", 255),
    "aws:ecs/taskDefinition:TaskDefinition": ("family", 255),
    "aws:cloudwatch/metricAlarm:MetricAlarm": ("name", 255),
    "aws:cloudfront/originAccessControl:OriginAccessControl": ("name", 64),
    "aws:cloudfront/cachePolicy:CachePolicy": ("name", 128),
    "aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy": ("name", 128),
    "aws:secretsmanager/secret:Secret": ("name", 512),
    "aws:cloudwatch/logGroup:LogGroup": ("name", 512),
}
AUTONAME_SUFFIX = 8


def name_length_problem(type_: str, logical_name: str, props: Mapping[str, Any], stack: str) -> Optional[str]:
    """The message for a name AWS would refuse as too long, or None (values known only later pass)."""
    if type_ not in NAME_LIMITS:
        return None
    prop, limit = NAME_LIMITS[type_]
    camel = camel_case(prop)
    explicit = props.get(prop)
    if explicit is None:
        explicit = props.get(camel)
    if explicit is None:  # left to Pulumi's auto-naming
        length, shown = len(logical_name) + AUTONAME_SUFFIX, f"{logical_name}-xxxxxxx"
    elif isinstance(explicit, str):
        length, shown = len(explicit), explicit
    else:
        return None  # an Output: known only at deploy time (the Cognito default is checked above)
    if length <= limit:
        return None
    return (f"stack name {stack!r}: {type_.rsplit(':', 1)[-1]} {shown!r} is {length} characters, AWS allows "
            f"{limit}: use a stack name shorter by at least {length - limit}")


def check_generated_names(args: Any) -> None:
    """Pulumi stack transformation: stop at preview on the first name AWS would refuse as too long."""
    import pulumi

    problem = name_length_problem(args.type_, args.name, args.props or {}, pulumi.get_stack())
    if problem:
        raise ConfigError(problem)
    return None
