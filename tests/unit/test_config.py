"""Typed stack configuration: defaults per environment and one clear error per bad key."""

from __future__ import annotations

import pytest

from components.config import ConfigError, StackConfig, rds_max_connections
from components.offline import run_program, stack_config_values

CERT = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-4000-8000-000000000000"


def dev(**values):
    base = {"dicom-annotate:allowHttp": True}
    base.update({f"dicom-annotate:{k}": v for k, v in values.items()})
    return StackConfig.from_mapping(base, stack="dev")


def prod(**values):
    base = {"dicom-annotate:certificateArn": CERT}
    base.update({f"dicom-annotate:{k}": v for k, v in values.items()})
    return StackConfig.from_mapping(base, stack="prod")


def test_stack_yaml_files_load_and_differ():
    d = StackConfig.from_mapping(stack_config_values("dev"), stack="dev", region="us-east-1")
    p = StackConfig.from_mapping(stack_config_values("prod"), stack="prod", region="us-east-1")
    assert (d.environment, p.environment) == ("dev", "prod")
    assert d.nat_gateways == "single" and p.nat_gateways == "one-per-az"
    assert not d.interface_endpoints and p.interface_endpoints
    assert (d.db_backup_retention_days, p.db_backup_retention_days) == (7, 35)
    assert p.deletion_protection and p.db_multi_az and not d.deletion_protection
    assert d.allow_http and not p.allow_http and p.https


def test_every_field_has_a_default():
    # Constructing with no arguments must work: every setting has a default.
    assert StackConfig().environment == "dev"


@pytest.mark.parametrize("values, key, words", [
    ({"dbInstanceClass": "t4g.micro"}, "dbInstanceClass", "not an RDS class"),
    ({"dbInstanceClass": "db.x99.huge"}, "dbInstanceClass", "known class table"),
    ({"minTasks": 3, "maxTasks": 2}, "maxTasks", "below minTasks"),
    ({"minTasks": 0}, "minTasks", "at least 1"),
    ({"orthancCpu": 1000}, "orthancCpu", "Fargate CPU size"),
    ({"orthancCpu": 1024, "orthancMemory": 512}, "orthancMemory", "not allowed with 1024"),
    ({"natGateways": "two"}, "natGateways", "not one of"),
    ({"natGateways": "none"}, "natGateways", "not one of"),
    ({"logRetentionDays": 10}, "logRetentionDays", "retention value"),
    ({"vpcCidr": "8.8.0.0/16"}, "vpcCidr", "private block"),
    ({"vpcId": "vpc-0123456789abcdef0", "publicSubnetIds": ["subnet-0aaaaaaaaaaaaaaaa"],
      "privateSubnetIds": ["subnet-0bbbbbbbbbbbbbbbb", "subnet-0cccccccccccccccc"]},
     "publicSubnetIds", "exactly 2"),
    ({"publicSubnetIds": ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"]}, "vpcId", "VPC id"),
    ({"dicomNlb": True}, "dicomAllowedCidrs", "modality CIDR"),
    ({"dicomNlb": True, "dicomAllowedCidrs": ["0.0.0.0/0"]}, "dicomAllowedCidrs", "internet"),
    ({"orthancImage": "orthancteam/orthanc:latest"}, "orthancImage", "pinned"),
    ({"maxTasks": "many"}, "maxTasks", "not an integer"),
    ({"flowLogs": "yes"}, "flowLogs", "true or false"),
    ({"dbInstanceTyp": "db.t4g.micro"}, "dbInstanceTyp", "unknown setting"),
    ({"dbinstanceclass": "db.t4g.micro"}, "dbinstanceclass", "did you mean dbInstanceClass"),
])
def test_bad_values_name_the_key(values, key, words):
    with pytest.raises(ConfigError) as err:
        dev(**values)
    message = str(err.value)
    assert message.startswith(f"dicom-annotate:{key}:"), message
    assert words in message


def test_prod_requires_certificate():
    with pytest.raises(ConfigError, match=r"^dicom-annotate:certificateArn: is required in prod"):
        StackConfig.from_mapping({}, stack="prod")


def test_dev_without_certificate_needs_explicit_allow_http():
    with pytest.raises(ConfigError, match=r"^dicom-annotate:certificateArn: is not set.*allowHttp"):
        StackConfig.from_mapping({}, stack="dev")
    assert "plain HTTP" in " ".join(dev().warnings())


def test_allow_http_refused_next_to_a_certificate_and_in_prod():
    with pytest.raises(ConfigError, match="allowHttp"):
        dev(certificateArn=CERT)
    with pytest.raises(ConfigError, match="allowHttp: is only allowed in dev|allowHttp: must be false"):
        prod(allowHttp=True)


def test_prod_refuses_weakening_the_database():
    with pytest.raises(ConfigError, match="deletionProtection: must be true in prod"):
        prod(deletionProtection=False)
    with pytest.raises(ConfigError, match="dbMultiAz: must be true in prod"):
        prod(dbMultiAz=False)


def test_prod_always_waits_for_steady_services_and_dev_may_opt_out():
    with pytest.raises(ConfigError, match="^dicom-annotate:waitForSteadyState: must be true in prod"):
        prod(waitForSteadyState=False)
    assert dev().wait_for_steady_state is True
    assert dev(waitForSteadyState="false").wait_for_steady_state is False


def test_secure_value_for_a_plain_setting_is_refused():
    with pytest.raises(ConfigError, match="dbInstanceClass: is a secret"):
        dev(dbInstanceClass={"secure": "v1:abc"})


def test_bring_your_own_vpc_accepted():
    cfg = dev(vpcId="vpc-0123456789abcdef0",
              publicSubnetIds=["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"],
              privateSubnetIds="subnet-0cccccccccccccccc, subnet-0dddddddddddddddd")
    assert cfg.byo_vpc and cfg.private_subnet_ids == ("subnet-0cccccccccccccccc", "subnet-0dddddddddddddddd")


def test_string_values_from_pulumi_config_are_coerced():
    cfg = dev(minTasks="2", maxTasks="4", flowLogs="false")
    assert (cfg.min_tasks, cfg.max_tasks, cfg.flow_logs) == (2, 4, False)


@pytest.mark.parametrize("instance_class, observed_default", [
    ("db.t4g.small", 198), ("db.t4g.medium", 413), ("db.m7g.large", 856)])
def test_rds_max_connections_follows_the_aws_formula_at_or_below_observed_defaults(instance_class,
                                                                                   observed_default):
    # LEAST(DBInstanceClassMemory/9531392, 5000), DBInstanceClassMemory estimated conservatively:
    # never above what RDS itself allows for the class (published observations), within 10 %.
    value = rds_max_connections(instance_class)
    assert observed_default * 0.9 <= value <= observed_default


def test_rds_max_connections_is_capped_and_known_classes_only():
    assert rds_max_connections("db.t4g.micro") < rds_max_connections("db.t4g.small")
    assert rds_max_connections("db.r7g.xlarge") <= 5000
    with pytest.raises(ConfigError, match="dicom-annotate:dbInstanceClass: 'db.x9.huge' is not in the known"):
        rds_max_connections("db.x9.huge")


def test_program_stops_at_start_with_the_config_error():
    values = stack_config_values("dev")
    values["dicom-annotate:maxTasks"] = 0
    with pytest.raises(ConfigError, match="dicom-annotate:minTasks|dicom-annotate:maxTasks"):
        run_program("dev", config=values)


def test_portal_and_viewer_defaults_per_environment():
    d, p = dev(), prod()
    # dev without a certificate cannot sign users in at the ALB (HTTPS-only action): no portal.
    assert d.portal_enabled is False and p.portal_enabled is True
    assert dev(allowHttp=False, certificateArn=CERT).portal_enabled is True
    assert (d.portal_cpu, d.portal_memory, d.portal_min_tasks, d.portal_max_tasks) == (256, 512, 1, 2)
    assert (p.portal_cpu, p.portal_memory, p.portal_min_tasks, p.portal_max_tasks) == (512, 1024, 2, 4)
    assert (d.portal_mfa, p.portal_mfa) == ("optional", "required")
    assert d.viewer_assets_domain is None and d.viewer_assets_certificate_arn is None


def test_portal_settings_can_be_overridden_within_fargate_sizes():
    cfg = prod(portalCpu=1024, portalMemory=3072, portalMinTasks="3", portalMaxTasks=5, portalEnabled="false")
    assert (cfg.portal_cpu, cfg.portal_memory, cfg.portal_min_tasks, cfg.portal_max_tasks) == (1024, 3072, 3, 5)
    assert cfg.portal_enabled is False
