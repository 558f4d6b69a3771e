"""Network component: the VPC (created or brought), its endpoints and its flow logs.

Creates an awsx VPC over two availability zones (a public and a private subnet in each, NAT per
``nat_gateways``), or uses a VPC the user brings (``vpc_id`` + two public + two private subnets).
Either way it adds the S3 gateway endpoint, the interface endpoints that replace NAT traffic for
ECS/Lambda (behind ``interface_endpoints``) and VPC flow logs to a KMS-encrypted log group.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_awsx as awsx

from components.storage import encrypted_log_group


@dataclass
class NetworkArgs:
    cidr: str
    nat_gateways: str                      # single | one-per-az | none
    interface_endpoints: bool
    flow_logs: bool
    log_retention_days: int
    kms_key_arn: pulumi.Input[str]
    vpc_id: Optional[str] = None           # bring-your-own VPC when set
    # A brought VPC may already have these: no second S3 gateway route, no second private DNS zone.
    s3_gateway_endpoint: bool = True
    interface_endpoint_private_dns: bool = True
    public_subnet_ids: Sequence[str] = ()
    private_subnet_ids: Sequence[str] = ()
    tags: dict[str, str] = field(default_factory=dict)
    # AWS services reached through interface endpoints: what ECS tasks and Lambdas call at start.
    endpoint_services: Sequence[str] = ("secretsmanager", "ecr.api", "ecr.dkr", "logs", "sts")


NAT_STRATEGIES = {
    "single": awsx.ec2.NatGatewayStrategy.SINGLE,
    "one-per-az": awsx.ec2.NatGatewayStrategy.ONE_PER_AZ,
}


class Network(pulumi.ComponentResource):
    """VPC, subnets, NAT, S3 gateway endpoint, optional interface endpoints, flow logs."""

    def __init__(self, name: str, args: NetworkArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("dicom-annotate:network:Network", name, None, opts)
        self._child = pulumi.ResourceOptions(parent=self)
        self._region = aws.get_region_output().region
        self._identity = aws.get_caller_identity_output()

        self._vpc(name, args)
        self._s3_endpoint(name, args)
        self._interface_endpoints(name, args)
        self._flow_logs(name, args)

        self.register_outputs({
            "vpc_id": self.vpc_id,
            "vpc_cidr": self.vpc_cidr,
            "public_subnet_ids": self.public_subnet_ids,
            "private_subnet_ids": self.private_subnet_ids,
        })

    def _vpc(self, name: str, args: NetworkArgs) -> None:
        """The awsx VPC over two zones (public + private subnet each), or the brought one's ids and CIDR."""
        child = self._child
        if args.vpc_id:
            # Bring-your-own VPC: nothing is created for the VPC itself; its CIDR is looked up.
            self.vpc = None
            self.vpc_id = pulumi.Output.from_input(args.vpc_id)
            self.vpc_cidr = aws.ec2.get_vpc_output(id=args.vpc_id).cidr_block
            self.public_subnet_ids = pulumi.Output.from_input(list(args.public_subnet_ids))
            self.private_subnet_ids = pulumi.Output.from_input(list(args.private_subnet_ids))
        else:
            self.vpc = awsx.ec2.Vpc(
                f"{name}-vpc",
                cidr_block=args.cidr,
                number_of_availability_zones=2,
                nat_gateways=awsx.ec2.NatGatewayConfigurationArgs(strategy=NAT_STRATEGIES[args.nat_gateways]),
                subnet_strategy=awsx.ec2.SubnetAllocationStrategy.AUTO,
                subnet_specs=[
                    awsx.ec2.SubnetSpecArgs(type=awsx.ec2.SubnetType.PUBLIC, name="public"),
                    awsx.ec2.SubnetSpecArgs(type=awsx.ec2.SubnetType.PRIVATE, name="private"),
                ],
                # Interface endpoints with private DNS need both DNS attributes on.
                enable_dns_hostnames=True,
                enable_dns_support=True,
                tags=args.tags,
                opts=child,
            )
            self.vpc_id = self.vpc.vpc_id
            self.vpc_cidr = pulumi.Output.from_input(args.cidr)
            self.public_subnet_ids = self.vpc.public_subnet_ids
            self.private_subnet_ids = self.vpc.private_subnet_ids

    def _s3_endpoint(self, name: str, args: NetworkArgs) -> None:
        """The S3 gateway endpoint on every route table of the VPC."""
        child, region = self._child, self._region
        # S3 traffic (DICOM storage, buckets) stays off the NAT: gateway endpoint on every route
        # table of the VPC. awsx keeps its route tables opaque, so they are looked up by VPC id —
        # the same lookup serves a brought VPC. A brought VPC that has its own S3 gateway endpoint
        # keeps it (s3GatewayEndpoint: false): a route table takes one route per prefix list, so a
        # second endpoint fails with "route already exists".
        self.s3_endpoint: Optional[aws.ec2.VpcEndpoint] = None
        if args.s3_gateway_endpoint:
            route_table_ids = aws.ec2.get_route_tables_output(vpc_id=self.vpc_id).ids
            self.s3_endpoint = aws.ec2.VpcEndpoint(
                f"{name}-s3",
                vpc_id=self.vpc_id,
                service_name=pulumi.Output.concat("com.amazonaws.", region, ".s3"),
                vpc_endpoint_type="Gateway",
                route_table_ids=route_table_ids,
                tags=args.tags,
                opts=child,
            )

    def _interface_endpoints(self, name: str, args: NetworkArgs) -> None:
        """Interface endpoints for what ECS tasks and Lambdas call at start, HTTPS from the VPC only."""
        child, region = self._child, self._region
        self.endpoint_security_group_id: Optional[pulumi.Output[str]] = None
        self.interface_endpoints: list[aws.ec2.VpcEndpoint] = []
        if args.interface_endpoints:
            endpoint_sg = aws.ec2.SecurityGroup(
                f"{name}-endpoints",
                description="Interface VPC endpoints: HTTPS from inside the VPC only",
                vpc_id=self.vpc_id,
                tags=args.tags,
                opts=child,
            )
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-endpoints-https",
                security_group_id=endpoint_sg.id,
                description="HTTPS from the VPC CIDR",
                ip_protocol="tcp", from_port=443, to_port=443,
                cidr_ipv4=self.vpc_cidr,
                tags=args.tags,
                opts=pulumi.ResourceOptions(parent=endpoint_sg),
            )
            self.endpoint_security_group_id = endpoint_sg.id
            for service in args.endpoint_services:
                self.interface_endpoints.append(aws.ec2.VpcEndpoint(
                    f"{name}-{service.replace('.', '-')}",
                    vpc_id=self.vpc_id,
                    service_name=pulumi.Output.concat("com.amazonaws.", region, f".{service}"),
                    vpc_endpoint_type="Interface",
                    # Off only for a brought VPC whose own endpoints already hold the private
                    # hosted zone (interfaceEndpointPrivateDns: false): a second one is refused
                    # ("conflicting DNS domain"). https://docs.aws.amazon.com/vpc/latest/privatelink/privatelink-access-aws-services.html
                    private_dns_enabled=args.interface_endpoint_private_dns,
                    subnet_ids=self.private_subnet_ids,
                    security_group_ids=[endpoint_sg.id],
                    tags=args.tags,
                    opts=child,
                ))

    def _flow_logs(self, name: str, args: NetworkArgs) -> None:
        """VPC flow logs to their own encrypted log group, through a role only this account's flow logs assume."""
        child, region, identity = self._child, self._region, self._identity
        # Flow logs also on a brought VPC: the security floor is ours to keep, and a VPC may carry
        # several flow logs, so this does not disturb one the owner already has.
        self.flow_log_group_name: Optional[pulumi.Output[str]] = None
        if args.flow_logs:
            log_group = encrypted_log_group(
                f"{name}-flow-logs", f"/vpc/{name}/flow-logs", retention_days=args.log_retention_days,
                kms_key_arn=args.kms_key_arn, tags=args.tags, opts=child)
            partition = aws.get_partition_output().partition
            trust = pulumi.Output.all(identity.account_id, region).apply(
                lambda vals: json.dumps(_flow_logs_trust(vals[0], vals[1])))
            role = aws.iam.Role(
                f"{name}-flow-logs-role",
                description="VPC flow logs delivery to its own CloudWatch log group",
                assume_role_policy=trust,
                tags=args.tags,
                opts=child,
            )
            aws.iam.RolePolicy(
                f"{name}-flow-logs-policy",
                role=role.id,
                policy=pulumi.Output.all(log_group.arn, partition, region, identity.account_id).apply(
                    lambda v: json.dumps(_flow_logs_policy(*v))),
                opts=pulumi.ResourceOptions(parent=role),
            )
            aws.ec2.FlowLog(
                f"{name}-flow-log",
                vpc_id=self.vpc_id,
                traffic_type="ALL",
                log_destination_type="cloud-watch-logs",
                log_destination=log_group.arn,
                iam_role_arn=role.arn,
                max_aggregation_interval=600,
                tags=args.tags,
                opts=child,
            )
            self.flow_log_group_name = log_group.name

def https_only_security_group(prefix: str, *, vpc_id: pulumi.Input[str], description: str,
                              egress_description: str, tags: dict[str, str],
                              opts: pulumi.ResourceOptions) -> aws.ec2.SecurityGroup:
    """``{prefix}-sg``: no ingress at all; HTTPS out only (NAT or VPC endpoints)."""
    return aws.ec2.SecurityGroup(
        f"{prefix}-sg", vpc_id=vpc_id, description=description, ingress=[],
        egress=[aws.ec2.SecurityGroupEgressArgs(protocol="tcp", from_port=443, to_port=443,
                                                cidr_blocks=["0.0.0.0/0"], description=egress_description)],
        tags={**tags, "Name": prefix}, opts=opts)


def _flow_logs_trust(account_id: str, region: str) -> dict:
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
            "Action": "sts:AssumeRole",
            # Confused-deputy guard: only flow logs of this account and region.
            "Condition": {
                "StringEquals": {"aws:SourceAccount": account_id},
                "ArnLike": {"aws:SourceArn": f"arn:aws:ec2:{region}:{account_id}:vpc-flow-log/*"},
            },
        }],
    }


def _flow_logs_policy(log_group_arn: str, partition: str, region: str, account_id: str) -> dict:
    """The actions the flow-logs IAM page lists; no CreateLogGroup (the group is ours, encrypted).

    https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs-iam-role.html lists
    logs:DescribeLogGroups too; it has no log-group resource scoping beyond the account's groups.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "OwnLogGroup",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            "Resource": [log_group_arn, f"{log_group_arn}:*"],
        }, {
            "Sid": "DescribeLogGroups",
            "Effect": "Allow",
            "Action": "logs:DescribeLogGroups",
            "Resource": f"arn:{partition}:logs:{region}:{account_id}:log-group:*",
        }],
    }
