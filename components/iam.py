"""IAM documents more than one component writes: service trust policies and the VPC Lambda floor."""

from __future__ import annotations

from typing import Any, Sequence


def service_role_trust(service: str) -> dict[str, Any]:
    """Trust for a service-assumed role, exactly as the service documents it.

    No ``aws:SourceAccount``/``aws:SourceArn`` condition: SageMaker documents those only for
    training, processing, inference and Studio, not for notebook instances or Ground Truth labeling
    jobs (https://docs.aws.amazon.com/sagemaker/latest/dg/security-confused-deputy-prevention.html,
    execution-role trust in https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-roles.html);
    Lambda's execution-role trust has none
    (https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html). A condition
    the service does not send makes AssumeRole fail. What limits use instead: iam:PassRole (only
    this account's principals may hand these roles to the service) and, for invoking the Lambdas,
    the resource policy's source account.
    """
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }]}


def account_service_trust(service: str, account_id: str) -> dict[str, Any]:
    """Trust for a service that sends ``aws:SourceAccount`` (ECS tasks, RDS monitoring): this account only."""
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
    }]}


def vpc_lambda_statements(log_group_arn: str, secret_arns: Sequence[str]) -> list[dict[str, Any]]:
    """What every Lambda of the project in the VPC needs: ENIs, its own logs, X-Ray, its secrets
    (AWSLambdaVPCAccessExecutionRole, narrowed)."""
    return [
        # ENI actions do not support resource-level scoping; Lambda needs them for VPC attachment.
        {"Sid": "VpcNetworkInterfaces", "Effect": "Allow", "Resource": "*", "Action": [
            "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
            "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"]},
        {"Sid": "OwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"{log_group_arn.removesuffix(':*')}:*"},
        {"Sid": "Tracing", "Effect": "Allow", "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
         "Resource": "*"},
        {"Sid": "Secrets", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
         "Resource": list(secret_arns)},
    ]
