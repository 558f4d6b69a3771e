"""The Fargate pieces Orthanc and the portal share: the task definition shape and CPU autoscaling.

Tasks run Linux on x86_64 with awsvpc networking. Application Auto Scaling owns each service's task
count after creation (the services ignore ``desired_count`` changes); it scales out fast (60 s
cooldown) and in slowly (300 s) around the average CPU target.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws


def fargate_task_definition(name: str, *, cpu: int, memory: int, execution_role_arn: pulumi.Input[str],
                            task_role_arn: pulumi.Input[str], container_definitions: pulumi.Input[str],
                            tags: Mapping[str, str], parent: pulumi.Resource,
                            volumes: Optional[Sequence[aws.ecs.TaskDefinitionVolumeArgs]] = None,
                            ) -> aws.ecs.TaskDefinition:
    """``{name}-taskdef`` (family ``name``, child of ``parent``)."""
    return aws.ecs.TaskDefinition(
        f"{name}-taskdef",
        family=name,
        cpu=str(cpu),
        memory=str(memory),
        network_mode="awsvpc",
        requires_compatibilities=["FARGATE"],
        runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
            operating_system_family="LINUX", cpu_architecture="X86_64"),
        execution_role_arn=execution_role_arn,
        task_role_arn=task_role_arn,
        container_definitions=container_definitions,
        volumes=list(volumes) if volumes else None,
        tags=dict(tags), opts=pulumi.ResourceOptions(parent=parent))


def ecs_cpu_autoscaling(name: str, *, cluster_name: pulumi.Input[str], service: aws.ecs.Service,
                        min_tasks: int, max_tasks: int, cpu_target_percent: float,
                        tags: Mapping[str, str], parent: pulumi.Resource) -> aws.appautoscaling.Target:
    """``{name}-scaling`` (child of ``parent``) and its ``{name}-cpu`` policy (child of the target)."""
    target = aws.appautoscaling.Target(
        f"{name}-scaling",
        service_namespace="ecs",
        scalable_dimension="ecs:service:DesiredCount",
        resource_id=pulumi.Output.concat("service/", cluster_name, "/", service.name),
        min_capacity=min_tasks,
        max_capacity=max_tasks,
        tags=dict(tags), opts=pulumi.ResourceOptions(parent=parent))
    scaling = aws.appautoscaling
    scaling.Policy(
        f"{name}-cpu",
        policy_type="TargetTrackingScaling",
        service_namespace=target.service_namespace,
        scalable_dimension=target.scalable_dimension,
        resource_id=target.resource_id,
        target_tracking_scaling_policy_configuration=scaling.PolicyTargetTrackingScalingPolicyConfigurationArgs(
            target_value=float(cpu_target_percent),
            predefined_metric_specification=scaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(  # noqa: E501
                predefined_metric_type="ECSServiceAverageCPUUtilization"),
            scale_in_cooldown=300,
            scale_out_cooldown=60),
        opts=pulumi.ResourceOptions(parent=target))
    return target
