"""FargateService: one ECS service on Fargate, as Orthanc and the portal both run.

Declares (children of this component, itself a child of the service's owner): its encrypted log
group, the ECS agent's execution role and the container's task role (each with the owner's inline
policy), the task definition (Linux, x86_64, awsvpc), the service (private subnets, no public IP, circuit
breaker with rollback, new tasks before old ones stop) and CPU target-tracking autoscaling.
Application Auto Scaling owns the task count after creation (the service ignores
``desired_count`` changes); it scales out fast (60 s cooldown) and in slowly (300 s).

Resource names are the owner's (``{name}-taskdef``, ``{name}-service``, …: the component takes
the owner's name), and each child carries an alias to the owner, its parent before this component
existed, so a deployed stack updates them in place. The owner keeps its security group and wires
its rules with :func:`port_rule` (Orthanc's and the portal's peers differ).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.config import TaskSize
from components.iam import account_service_trust
from components.storage import encrypted_log_group

# ECS starts the new tasks before stopping the old ones; connection budgets cover that peak.
DEPLOYMENT_MAX_PERCENT = 200


@dataclass
class FargateServiceArgs:
    size: TaskSize
    cluster_arn: pulumi.Input[str]
    cluster_name: pulumi.Input[str]
    subnet_ids: pulumi.Input[list]
    security_group_ids: Sequence[pulumi.Input[str]]
    # Given the log group's name: the container definitions JSON.
    container_definitions: Callable[[pulumi.Output[str]], pulumi.Input[str]]
    execution_role_description: str
    # Given the log group's ARN: the execution role's policy JSON.
    execution_policy: Callable[[pulumi.Output[str]], pulumi.Input[str]]
    task_role_description: str
    task_policy: pulumi.Input[str]
    load_balancers: Sequence[aws.ecs.ServiceLoadBalancerArgs]
    log_retention_days: int
    kms_key_arn: pulumi.Input[str]
    # Time before ALB health checks count (schema creation, migrations at start).
    health_check_grace_period_seconds: int = 120
    service_registry_arn: Optional[pulumi.Input[str]] = None
    volumes: Sequence[aws.ecs.TaskDefinitionVolumeArgs] = ()
    # What the first task needs in place (listeners, a database role).
    depends_on: Sequence[pulumi.Resource] = ()
    tags: dict[str, str] = field(default_factory=dict)


class FargateService(pulumi.ComponentResource):
    """Log group, roles, task definition, service and autoscaling of one Fargate service."""

    def __init__(self, name: str, args: FargateServiceArgs, opts: pulumi.ResourceOptions):
        super().__init__("dicom-annotate:fargate:FargateService", name, None, opts)
        # Before this component, the owner (opts.parent) declared these resources itself.
        self._child = child = pulumi.ResourceOptions(parent=self, aliases=[pulumi.Alias(parent=opts.parent)])
        tags, size = args.tags, args.size
        self._logs_and_roles(name, args)

        self.task_definition = aws.ecs.TaskDefinition(
            f"{name}-taskdef",
            family=name,
            cpu=str(size.cpu),
            memory=str(size.memory),
            network_mode="awsvpc",
            requires_compatibilities=["FARGATE"],
            runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
                operating_system_family="LINUX", cpu_architecture="X86_64"),
            execution_role_arn=self.execution_role.arn,
            task_role_arn=self.task_role.arn,
            container_definitions=args.container_definitions(self.log_group.name),
            volumes=list(args.volumes) or None,
            tags=tags, opts=child)

        self.service = aws.ecs.Service(
            f"{name}-service",
            cluster=args.cluster_arn,
            task_definition=self.task_definition.arn,
            desired_count=size.min_tasks,
            launch_type="FARGATE",
            platform_version="LATEST",
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=args.subnet_ids, security_groups=list(args.security_group_ids), assign_public_ip=False),
            load_balancers=list(args.load_balancers),
            service_registries=(aws.ecs.ServiceServiceRegistriesArgs(registry_arn=args.service_registry_arn)
                                if args.service_registry_arn is not None else None),
            deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(enable=True, rollback=True),
            deployment_maximum_percent=DEPLOYMENT_MAX_PERCENT,
            deployment_minimum_healthy_percent=100,
            health_check_grace_period_seconds=args.health_check_grace_period_seconds,
            enable_execute_command=False,
            enable_ecs_managed_tags=True,
            propagate_tags="SERVICE",
            wait_for_steady_state=size.wait_for_steady_state,
            tags=tags,
            # Autoscaling owns the task count after creation.
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(
                depends_on=list(args.depends_on), ignore_changes=["desired_count"])))

        self._autoscaling(name, args)

        self.service_name = self.service.name
        self.log_group_name = self.log_group.name
        self.register_outputs({"service_name": self.service_name, "log_group_name": self.log_group_name})

    def _logs_and_roles(self, name: str, args: FargateServiceArgs) -> None:
        """The log group, and the two roles ECS assumes (trust: this account's ECS tasks only)."""
        tags, child = args.tags, self._child
        account = aws.get_caller_identity_output().account_id
        self.log_group = encrypted_log_group(
            f"{name}-logs", f"/ecs/{name}", retention_days=args.log_retention_days,
            kms_key_arn=args.kms_key_arn, tags=tags, opts=child)
        trust = account.apply(lambda a: json.dumps(account_service_trust("ecs-tasks.amazonaws.com", a)))
        self.execution_role = aws.iam.Role(
            f"{name}-execution-role", description=args.execution_role_description, assume_role_policy=trust,
            tags=tags, opts=child)
        aws.iam.RolePolicy(
            f"{name}-execution-policy", role=self.execution_role.id,
            policy=args.execution_policy(self.log_group.arn),
            opts=pulumi.ResourceOptions(parent=self.execution_role))
        self.task_role = aws.iam.Role(
            f"{name}-task-role", description=args.task_role_description, assume_role_policy=trust,
            tags=tags, opts=child)
        aws.iam.RolePolicy(
            f"{name}-task-policy", role=self.task_role.id, policy=args.task_policy,
            opts=pulumi.ResourceOptions(parent=self.task_role))

    def _autoscaling(self, name: str, args: FargateServiceArgs) -> None:
        """CPU target tracking between the size's min and max tasks."""
        tags, size, child = args.tags, args.size, self._child
        self.scaling_target = aws.appautoscaling.Target(
            f"{name}-scaling",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat("service/", args.cluster_name, "/", self.service.name),
            min_capacity=size.min_tasks,
            max_capacity=size.max_tasks,
            tags=tags, opts=child)
        scaling = aws.appautoscaling
        scaling.Policy(
            f"{name}-cpu",
            policy_type="TargetTrackingScaling",
            service_namespace=self.scaling_target.service_namespace,
            scalable_dimension=self.scaling_target.scalable_dimension,
            resource_id=self.scaling_target.resource_id,
            target_tracking_scaling_policy_configuration=scaling.PolicyTargetTrackingScalingPolicyConfigurationArgs(
                target_value=float(size.cpu_target_percent),
                predefined_metric_specification=scaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(  # noqa: E501
                    predefined_metric_type="ECSServiceAverageCPUUtilization"),
                scale_in_cooldown=300,
                scale_out_cooldown=60),
            opts=pulumi.ResourceOptions(parent=self.scaling_target))


def port_rule(kind: type, name: str, *, security_group_id: pulumi.Input[str], port: int, description: str,
              peer: Optional[pulumi.Input[str]] = None, cidr: Optional[pulumi.Input[str]] = None,
              tags: dict[str, str], parent: pulumi.Resource) -> pulumi.CustomResource:
    """One TCP port rule (``aws.vpc.SecurityGroupIngressRule`` or ``…EgressRule``) naming its peer:
    a security group or a CIDR, never both."""
    return kind(name, security_group_id=security_group_id, description=description, ip_protocol="tcp",
                from_port=port, to_port=port, referenced_security_group_id=peer, cidr_ipv4=cidr,
                tags=tags, opts=pulumi.ResourceOptions(parent=parent))
