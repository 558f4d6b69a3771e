"""Network component under Pulumi mocks: awsx VPC inputs, endpoints, flow logs, bring-your-own VPC."""

from __future__ import annotations

import json

import pytest

from components.config import StackConfig
from tests.unit.programs import (
    BYO_PRIVATE, BYO_PUBLIC, BYO_VPC, byo_variant_values, dev_variant_values, program,
)
from components.checks.offline import (
    ACCOUNT_ID,
    BYO_VPC_CIDR,
    Recording,
    _mock_state,
   
    stack_config_values,
)

INTERFACE_SERVICES = {"secretsmanager", "ecr.api", "ecr.dkr", "logs", "sts"}
MOCK_PRIVATE = ["subnet-0b000000000000", "subnet-0b100000000000"]  # offline.py's awsx VPC outputs


def _config(rec: Recording) -> StackConfig:
    return StackConfig.from_mapping(stack_config_values(rec.stack), stack=rec.stack)


def _net(rec: Recording) -> str:
    return f"da-{rec.stack}-net"


def _mock_id(resource) -> str:
    return _mock_state(resource.type, resource.name, resource.inputs, "us-east-1")["id"]


def _variant(stack: str, **settings) -> Recording:
    values = stack_config_values(stack)
    values.update({f"dicom-annotate:{k}": v for k, v in settings.items()})
    return program(stack, config=values)


@pytest.fixture(scope="module")
def byo() -> Recording:
    """dev on a brought VPC, with interface endpoints switched on."""
    return _variant("dev", vpcId=BYO_VPC, publicSubnetIds=BYO_PUBLIC, privateSubnetIds=BYO_PRIVATE,
                    interfaceEndpoints=True)


# ------------------------------------------------------------------------------- the awsx VPC
def test_vpc_spans_two_azs_with_public_and_private_subnets(recording):
    config = _config(recording)
    (vpc,) = recording.of_type("awsx:ec2:Vpc")
    assert vpc.inputs["cidrBlock"] == config.vpc_cidr
    assert vpc.inputs["numberOfAvailabilityZones"] == 2
    assert sorted(s["type"] for s in vpc.inputs["subnetSpecs"]) == ["Private", "Public"]
    # Interface endpoints' private DNS needs both.
    assert vpc.inputs["enableDnsHostnames"] is True and vpc.inputs["enableDnsSupport"] is True
    assert recording.outputs["vpcId"].startswith("vpc-")


@pytest.mark.parametrize("stack, strategy", [("dev", "Single"), ("prod", "OnePerAz")])
def test_nat_strategy_follows_the_environment(recordings, stack, strategy):
    (vpc,) = recordings[stack].of_type("awsx:ec2:Vpc")
    assert vpc.inputs["natGateways"] == {"strategy": strategy}


@pytest.fixture(scope="module")
def one_per_az_no_flow_logs() -> Recording:
    return program("dev", config=dev_variant_values())


def test_nat_modes_are_configurable(one_per_az_no_flow_logs):
    assert one_per_az_no_flow_logs.of_type("awsx:ec2:Vpc")[0].inputs["natGateways"]["strategy"] == "OnePerAz"


# ------------------------------------------------------------------------------- endpoints
def test_s3_gateway_endpoint_on_the_vpc_route_tables(recording):
    s3 = recording.named(f"{_net(recording)}-s3")
    assert s3.inputs["vpcEndpointType"] == "Gateway"
    assert s3.inputs["serviceName"] == "com.amazonaws.us-east-1.s3"
    assert s3.inputs["vpcId"] == recording.outputs["vpcId"]
    assert s3.inputs["routeTableIds"] and all(r.startswith("rtb-") for r in s3.inputs["routeTableIds"])


@pytest.mark.parametrize("stack, expected", [("dev", set()), ("prod", INTERFACE_SERVICES)])
def test_interface_endpoints_follow_the_switch(recordings, stack, expected):
    rec = recordings[stack]
    interface = [e for e in rec.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
                 if e.inputs["vpcEndpointType"] == "Interface"]
    assert {e.inputs["serviceName"].split("us-east-1.", 1)[1] for e in interface} == expected
    for endpoint in interface:
        assert endpoint.inputs["privateDnsEnabled"] is True
        assert endpoint.inputs["subnetIds"] == MOCK_PRIVATE
        assert len(endpoint.inputs["securityGroupIds"]) == 1


def test_endpoint_security_group_allows_only_https_from_the_vpc(recordings):
    rec = recordings["prod"]
    sg = rec.named(f"{_net(rec)}-endpoints")
    rules = [r for r in rec.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
             if r.inputs["securityGroupId"] == _mock_id(sg)]
    assert [(r.inputs["fromPort"], r.inputs["toPort"], r.inputs["cidrIpv4"]) for r in rules] == \
        [(443, 443, _config(rec).vpc_cidr)]
    assert not [r for r in rec.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
                if r.inputs["securityGroupId"] == _mock_id(sg)]


# ------------------------------------------------------------------------------- flow logs
def test_flow_logs_go_to_a_kms_log_group_with_retention(recording):
    config = _config(recording)
    (flow,) = recording.of_type("aws:ec2/flowLog:FlowLog")
    group = recording.named(f"{_net(recording)}-flow-logs")
    assert group.type == "aws:cloudwatch/logGroup:LogGroup"
    assert flow.inputs["vpcId"] == recording.outputs["vpcId"]
    assert flow.inputs["trafficType"] == "ALL"
    assert flow.inputs["logDestinationType"] == "cloud-watch-logs"
    assert flow.inputs["logDestination"].endswith(f"log-group:{group.inputs['name']}")
    assert group.inputs["retentionInDays"] == config.log_retention_days
    assert group.inputs["kmsKeyId"] == recording.outputs["kmsKeyArn"]


def test_flow_log_role_is_scoped_to_its_log_group(recording):
    group_arn = recording.of_type("aws:ec2/flowLog:FlowLog")[0].inputs["logDestination"]
    role = recording.named(f"{_net(recording)}-flow-logs-role")
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert trust["Condition"]["StringEquals"]["aws:SourceAccount"] == ACCOUNT_ID
    policy = recording.named(f"{_net(recording)}-flow-logs-policy")
    own, describe = json.loads(policy.inputs["policy"])["Statement"]
    assert set(own["Resource"]) == {group_arn, f"{group_arn}:*"}
    assert set(own["Action"]) == {"logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"}
    # The flow-logs IAM page lists DescribeLogGroups too; scoped to this account's groups.
    assert describe["Action"] == "logs:DescribeLogGroups"
    assert describe["Resource"] == f"arn:aws:logs:us-east-1:{ACCOUNT_ID}:log-group:*"


def test_data_key_lets_cloudwatch_logs_use_it_only_for_this_accounts_log_groups(recording):
    # https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html: the
    # condition is the log group ARN in the encryption context, not aws:SourceAccount.
    (key,) = [k for k in recording.of_type("aws:kms/key:Key") if k.name.endswith("-data-key")]
    statements = {s["Sid"]: s for s in json.loads(key.inputs["policy"])["Statement"]}
    logs = statements["CloudWatchLogsEncrypt"]
    assert logs["Principal"] == {"Service": "logs.us-east-1.amazonaws.com"}
    assert logs["Condition"] == {"ArnLike": {
        "kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:us-east-1:{ACCOUNT_ID}:log-group:*"}}
    assert statements["AccountAdministers"]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}


def test_flow_logs_can_be_switched_off(one_per_az_no_flow_logs):
    rec = one_per_az_no_flow_logs
    assert not rec.of_type("aws:ec2/flowLog:FlowLog")
    assert not [g for g in rec.of_type("aws:cloudwatch/logGroup:LogGroup") if "flow" in g.name]
    assert not [r for r in rec.of_type("aws:iam/role:Role") if "flow" in r.name]


# ------------------------------------------------------------------------------- bring your own VPC
def test_byo_vpc_creates_no_vpc_and_uses_the_given_ids(byo):
    assert not byo.of_type("awsx:ec2:Vpc")
    assert byo.outputs["vpcId"] == BYO_VPC
    assert byo.named("da-dev-orthanc-alb").inputs["subnets"] == BYO_PUBLIC
    service = byo.named("da-dev-orthanc-service")
    assert service.inputs["networkConfiguration"]["subnets"] == BYO_PRIVATE


def test_byo_vpc_keeps_flow_logs_and_endpoints(byo):
    (flow,) = byo.of_type("aws:ec2/flowLog:FlowLog")
    assert flow.inputs["vpcId"] == BYO_VPC
    endpoints = byo.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert {e.inputs["vpcId"] for e in endpoints} == {BYO_VPC}
    assert len(endpoints) == 1 + len(INTERFACE_SERVICES)
    assert all(e.inputs["subnetIds"] == BYO_PRIVATE and e.inputs["privateDnsEnabled"] is True for e in endpoints
               if e.inputs["vpcEndpointType"] == "Interface")


def test_byo_vpc_that_has_its_own_endpoints_gets_no_s3_route_and_no_second_dns_zone():
    # "route already exists" / "conflicting DNS domain" on a VPC that already has them.
    rec = program("dev", config=byo_variant_values())
    endpoints = rec.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert [e.inputs["vpcEndpointType"] for e in endpoints] == ["Interface"] * len(INTERFACE_SERVICES)
    assert all(e.inputs["privateDnsEnabled"] is False for e in endpoints)


def test_byo_vpc_cidr_is_looked_up_for_the_endpoint_rule(byo):
    rule = byo.named("da-dev-net-endpoints-https")
    assert rule.inputs["cidrIpv4"] == BYO_VPC_CIDR


def test_network_resources_carry_the_stack_tags(recording):
    config = _config(recording)
    expected = {"project": "dicom-annotate", "stack": recording.stack, **config.tags}
    tagged = recording.of_type("awsx:ec2:Vpc", "aws:ec2/vpcEndpoint:VpcEndpoint", "aws:ec2/flowLog:FlowLog",
                               "aws:ec2/securityGroup:SecurityGroup")
    assert tagged
    for resource in tagged:
        assert expected.items() <= resource.inputs.get("tags", {}).items(), resource.name
