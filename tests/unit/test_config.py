"""Typed stack configuration: defaults per environment and one clear error per bad key."""

from __future__ import annotations

import pytest

from components.config import DEV_RETENTION, PROD_RETENTION, ConfigError, Retention, StackConfig, rds_max_connections
from components.names import name_length_problem
from components.checks.offline import stack_config_values
from tests.unit.programs import dev_https_values, prod_variant_values, program

CERT = "arn:aws:acm:us-east-1:210987654321:certificate/3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"


def dev(**values):
    base = {"dicom-annotate:allowHttp": True}
    base.update({f"dicom-annotate:{k}": v for k, v in values.items()})
    return StackConfig.from_mapping(base, stack="dev")


def prod(**values):
    base = {"dicom-annotate:certificateArn": CERT, "dicom-annotate:portalDomain": "labeling.hospital.org"}
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


@pytest.mark.parametrize("stack, values, retention", [
    ("dev", None, DEV_RETENTION), ("dev", dev_https_values(), DEV_RETENTION), ("prod", None, PROD_RETENTION)])
def test_every_secret_key_and_database_keeps_the_environments_retention(stack, values, retention):
    # dev with HTTPS adds the portal's secrets; prod has them all.
    rec = program(stack, config=values)
    secrets = rec.of_type("aws:secretsmanager/secret:Secret")
    keys = rec.of_type("aws:kms/key:Key")
    databases = rec.of_type("aws:rds/instance:Instance")
    assert len(secrets) >= 3 and len(keys) >= 2 and len(databases) == 1
    assert {s.name: s.inputs["recoveryWindowInDays"] for s in secrets} == {
        s.name: retention.secret_recovery_days for s in secrets}
    assert {k.name: k.inputs["deletionWindowInDays"] for k in keys} == {
        k.name: retention.key_deletion_days for k in keys}
    assert databases[0].inputs["backupRetentionPeriod"] == retention.db_backup_days
    assert StackConfig.from_mapping(values or stack_config_values(stack), stack=stack).retention == retention


def test_prod_keeps_the_longest_windows_aws_allows_and_dev_the_shortest():
    assert Retention.of(True) == Retention(secret_recovery_days=30, key_deletion_days=30, db_backup_days=35)
    assert Retention.of(False) == Retention(secret_recovery_days=7, key_deletion_days=7, db_backup_days=7)


@pytest.mark.parametrize("field, days", [("secret_recovery_days", 6), ("secret_recovery_days", 31),
                                         ("key_deletion_days", 0), ("db_backup_days", 36)])
def test_a_retention_outside_awss_range_is_refused(field, days):
    values = {"secret_recovery_days": 7, "key_deletion_days": 7, "db_backup_days": 7, field: days}
    with pytest.raises(ValueError, match=f"Retention.{field}: {days} is outside AWS's"):
        Retention(**values)


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
        program("dev", config=values)


def test_portal_and_viewer_defaults_per_environment():
    d, p = dev(), prod()
    # dev without a certificate cannot sign users in at the ALB (HTTPS-only action): no portal.
    assert d.portal_enabled is False and p.portal_enabled is True
    assert dev(allowHttp=False, certificateArn=CERT, portalDomain="labeling.hospital.org").portal_enabled is True
    assert (d.portal_cpu, d.portal_memory, d.portal_min_tasks, d.portal_max_tasks) == (256, 512, 1, 2)
    assert (p.portal_cpu, p.portal_memory, p.portal_min_tasks, p.portal_max_tasks) == (512, 1024, 2, 4)
    assert (d.portal_mfa, p.portal_mfa) == ("optional", "required")
    assert d.viewer_assets_domain is None and d.viewer_assets_certificate_arn is None


def test_portal_settings_can_be_overridden_within_fargate_sizes():
    cfg = prod(portalCpu=1024, portalMemory=3072, portalMinTasks="3", portalMaxTasks=5, portalEnabled="false")
    assert (cfg.portal_cpu, cfg.portal_memory, cfg.portal_min_tasks, cfg.portal_max_tasks) == (1024, 3072, 3, 5)
    assert cfg.portal_enabled is False


# ------------------------------------------------------------------ deploy readiness (issue 13)
def test_placeholders_shipped_in_prod_yaml_are_listed_and_the_program_refuses_them_outside_the_harness():
    cfg = StackConfig.from_mapping(stack_config_values("prod"), stack="prod")
    found = cfg.placeholders()
    assert [line.split(":")[1] for line in found] == ["certificateArn", "portalDomain"]
    assert "123456789012" in found[0] and "labeling.example.org" in found[1]
    assert all(f"{line} (pulumi preview/up refuse it)" in cfg.warnings() for line in found)
    # A real `pulumi preview` (no offline harness) stops with the first one, naming the key.
    with pytest.raises(ConfigError, match=r"^dicom-annotate:certificateArn: arn:aws:acm:us-east-1:123456789012:"
                                          r".* is a placeholder"):
        program("prod", strict=True, preview=True)


def test_real_certificate_and_domain_are_not_placeholders():
    assert prod().placeholders() == []
    assert prod(portalDomain="labels.test").placeholders()[0].startswith(
        "dicom-annotate:portalDomain: labels.test is a name reserved for examples")


def test_portal_needs_the_domain_its_certificate_covers():
    with pytest.raises(ConfigError, match=r"^dicom-annotate:portalDomain: is required with the portal"):
        prod(portalDomain=None)
    assert prod(portalDomain=None, portalEnabled=False).portal_enabled is False


@pytest.mark.parametrize("values, key, words", [
    ({"s3GatewayEndpoint": False}, "s3GatewayEndpoint", "only be false with a brought VPC"),
    ({"interfaceEndpointPrivateDns": False, "interfaceEndpoints": True}, "interfaceEndpointPrivateDns",
     "only be false with a brought VPC"),
])
def test_byo_only_endpoint_flags_are_refused_on_a_created_vpc(values, key, words):
    with pytest.raises(ConfigError, match=rf"^dicom-annotate:{key}: may {words}"):
        dev(**values)


def test_byo_vpc_may_skip_the_endpoints_it_already_has():
    byo = dict(vpcId="vpc-0a1b2c3d4e5f60718", publicSubnetIds="subnet-0aaaaaaaaaaaaaaaa,subnet-0bbbbbbbbbbbbbbbb",
               privateSubnetIds="subnet-0cccccccccccccccc,subnet-0dddddddddddddddd")
    cfg = dev(**byo, s3GatewayEndpoint=False, interfaceEndpoints=True, interfaceEndpointPrivateDns=False)
    assert (cfg.s3_gateway_endpoint, cfg.interface_endpoints, cfg.interface_endpoint_private_dns) == (False, True, False)
    with pytest.raises(ConfigError, match="^dicom-annotate:interfaceEndpointPrivateDns: applies to interfaceEndpoints"):
        dev(**byo, interfaceEndpointPrivateDns=False)


DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("image", [
    "orthancteam/orthanc:25.1.1",
    f"orthancteam/orthanc:25.1.1@{DIGEST}",
    f"210987654321.dkr.ecr.us-east-1.amazonaws.com/docker-hub/orthancteam/orthanc:25.1.1@{DIGEST}",
    f"210987654321.dkr.ecr.us-east-1.amazonaws.com/mirror/orthanc@{DIGEST}",
])
def test_orthanc_image_from_docker_hub_or_an_ecr_mirror_pinned_by_digest(image):
    assert dev(orthancImage=image).orthanc_image == image


@pytest.mark.parametrize("image, words", [
    ("orthancteam/orthanc:latest", "must be orthancteam/orthanc:<x.y.z>"),
    ("210987654321.dkr.ecr.us-east-1.amazonaws.com/docker-hub/orthancteam/orthanc:25.1.1", "pinned by digest"),
    (f"210987654321.dkr.ecr.eu-west-1.amazonaws.com/mirror/orthanc@{DIGEST}", "in eu-west-1, the stack in us-east-1"),
])
def test_unpinned_or_foreign_orthanc_images_are_refused(image, words):
    with pytest.raises(ConfigError, match=r"^dicom-annotate:orthancImage: ") as err:
        dev(orthancImage=image)
    assert words in str(err.value)


def test_plain_http_admits_nobody_until_cidrs_are_set_and_never_the_internet():
    assert dev().alb_ingress_cidrs == ()
    assert any("admits nobody" in note for note in dev().warnings())
    assert dev(albIngressCidrs=["203.0.113.0/24"]).alb_ingress_cidrs == ("203.0.113.0/24",)
    with pytest.raises(ConfigError, match=r"^dicom-annotate:albIngressCidrs: plain HTTP .* clear text"):
        dev(albIngressCidrs=["0.0.0.0/0"])
    assert prod().alb_ingress_cidrs == ("0.0.0.0/0",)  # HTTPS: the internet by default


def test_stack_names_must_fit_bucket_and_repository_names():
    with pytest.raises(ConfigError, match=r"^stack name 'Dev_1': use lower-case letters"):
        StackConfig.from_mapping({"dicom-annotate:allowHttp": True}, stack="Dev_1")
    long_stack = "prod-" + "x" * 40
    with pytest.raises(ConfigError, match=r"^dicom-annotate:cognitoDomainPrefix: the default sign-in domain prefix"):
        StackConfig.from_mapping({"dicom-annotate:certificateArn": CERT,
                                  "dicom-annotate:portalDomain": "labeling.hospital.org"}, stack=long_stack)


def test_generated_names_are_checked_against_their_aws_limit_for_the_actual_stack_name():
    # With the DICOM NLB, "da-<stack>-orthanc-dicom-tg" + Pulumi's 8-character suffix must fit in
    # 32: "prod" leaves no room, so any longer stack name stops at preview with the name and limit.
    values = prod_variant_values()  # dicomNlb: true
    with pytest.raises(ConfigError) as err:
        program("prod2", config=values)
    assert str(err.value) == ("stack name 'prod2': TargetGroup 'da-prod2-orthanc-dicom-tg-xxxxxxx' is 33 characters, "
                              "AWS allows 32: use a stack name shorter by at least 1")
    assert program("prod", config=values).named("da-prod-orthanc-dicom-tg")


@pytest.mark.parametrize("type_, name, props, problem", [
    ("aws:lb/loadBalancer:LoadBalancer", "da-staging-orthanc-alb", {"name": None}, None),
    ("aws:lb/loadBalancer:LoadBalancer", "da-staging-eu-orthanc-alb", {"name": None}, "is 33 characters, AWS allows 32"),
    ("aws:rds/instance:Instance", "x", {"identifier": "d" * 64}, "is 64 characters, AWS allows 63"),
    ("aws:iam/role:Role", "r" * 56, {}, None),
    ("aws:iam/role:Role", "r" * 57, {}, "is 65 characters, AWS allows 64"),
    ("aws:ec2/vpc:Vpc", "v" * 300, {}, None),
])
def test_name_limits_count_pulumis_suffix_for_auto_names(type_, name, props, problem):
    found = name_length_problem(type_, name, props, "s")
    assert (found is None) if problem is None else (problem in found), found
