"""The Portal component under Pulumi mocks: image, Cognito sign-in at the ALB, service, roles, secrets.

prod has the portal by default; dev gets it once it has a certificate (the ALB's authenticate
actions exist on HTTPS listeners only), so dev is exercised with a certificate here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from components.config import ConfigError, StackConfig, rds_max_connections
from tests.unit.programs import (
    CERT, PORTAL_DOMAIN, PORTAL_PROBE_KEY, dev_https_values, prod_variant_values, program,
)
from components.checks.offline import (
    ACCOUNT_ID, PLACEHOLDER_SECRET, Recording, RecordedResource, _mock_state, mock_password, run_program,
    stack_config_values,
)
from components.fargate import DEPLOYMENT_MAX_PERCENT
from components.portal import (
    EXPORT_PREFIX, PORTAL_MAX_OVERFLOW, PORTAL_PORT, portal_db_pool_size,
)
from labeling.orthanc.config import DEFAULT_RESERVED_CONNECTIONS, connection_budget

ROOT = Path(__file__).resolve().parents[2]
PRIVATE = ["subnet-0b000000000000", "subnet-0b100000000000"]  # the mocked awsx VPC's private subnets
SECRET_SIG = "4dabf18193072939515e22adb298388d"
SG_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
ENV_NAMES = {
    "PORTAL_HOST", "PORTAL_PORT", "PORTAL_ROOT_PATH", "PORTAL_AUTH_MODE", "PORTAL_OIDC_REGION",
    "PORTAL_OIDC_ALB_ARN", "PORTAL_COGNITO_USER_POOL_ID", "PORTAL_COGNITO_CLIENT_ID", "PORTAL_DB_HOST",
    "PORTAL_DB_PORT", "PORTAL_DB_NAME", "PORTAL_DB_USER", "PORTAL_DB_SSLMODE", "PORTAL_DB_CREATE", "ORTHANC_URL",
    "ORTHANC_SECRET_ARN", "PORTAL_DEIDENTIFY", "DEIDENTIFY_SALT_SECRET_ARN", "PORTAL_CACHE_DIR",
    "PORTAL_EXPORT_BUCKET", "PORTAL_EXPORT_KMS_KEY_ID", "PORTAL_DB_POOL_SIZE", "AWS_DEFAULT_REGION",
}


@pytest.fixture(scope="module")
def dev_portal() -> Recording:
    return program("dev", config=dev_https_values())


@pytest.fixture(scope="module", params=["dev", "prod"])
def rec(request, dev_portal, recordings) -> Recording:
    return dev_portal if request.param == "dev" else recordings["prod"]


def _p(rec: Recording, suffix: str) -> RecordedResource:
    return rec.named(f"da-{rec.stack}-portal-{suffix}")


def _o(rec: Recording, suffix: str) -> RecordedResource:
    return rec.named(f"da-{rec.stack}-orthanc-{suffix}")


def _state(resource: RecordedResource) -> dict:
    return _mock_state(resource.type, resource.name, resource.inputs, "us-east-1")


def _container(rec: Recording) -> dict:
    (definition,) = json.loads(_p(rec, "taskdef").inputs["containerDefinitions"])
    return definition


def _env(rec: Recording) -> dict[str, str]:
    return {e["name"]: e["value"] for e in _container(rec)["environment"]}


def _statements(resource: RecordedResource) -> list[dict]:
    return json.loads(resource.inputs["policy"])["Statement"]


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


# ------------------------------------------------------------------------------------ presence
def test_stock_dev_has_no_portal_and_says_why(recordings):
    dev = recordings["dev"]
    assert not [r for r in dev.resources if "-portal-" in r.name]
    assert "portalUrl" not in dev.outputs
    config = StackConfig.from_mapping(stack_config_values("dev"), stack="dev")
    assert any("portalEnabled" in w and "certificateArn" in w for w in config.warnings())


def test_portal_outputs_are_exported_and_not_secret(rec):
    assert rec.outputs["portalUrl"] == f"https://{PORTAL_DOMAIN}/portal/"
    pool = _state(_p(rec, "users"))
    assert rec.outputs["portalUserPoolId"] == pool["id"]
    assert rec.outputs["portalSignInDomain"] == f"da-{rec.stack}-portal-{ACCOUNT_ID}.auth.us-east-1.amazoncognito.com"
    for key in ("portalUrl", "portalUserPoolId", "portalSignInDomain", "portalRepositoryUrl"):
        assert key not in rec.secret_outputs and PLACEHOLDER_SECRET not in str(rec.outputs[key])


# ------------------------------------------------------------------------------------ image
def test_image_is_built_from_portal_dockerfile_into_a_scanned_encrypted_repository(rec):
    repo = _p(rec, "repo")
    assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo.inputs["encryptionConfigurations"] == [{"encryptionType": "KMS", "kmsKey": rec.outputs["kmsKeyArn"]}]
    (lifecycle,) = [r for r in rec.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy")
                    if r.inputs["repository"] == _state(repo)["name"]]
    assert json.loads(lifecycle.inputs["policy"])["rules"][0]["action"] == {"type": "expire"}
    image = _p(rec, "image")
    assert image.type == "awsx:ecr:Image"
    assert image.inputs["repositoryUrl"] == _state(repo)["repositoryUrl"]
    assert image.inputs["dockerfile"] == str(ROOT / "portal.Dockerfile")
    assert image.inputs["context"] == str(ROOT) and image.inputs["platform"] == "linux/amd64"
    # Tasks run the pushed digest, not a tag.
    assert re.fullmatch(re.escape(_state(repo)["repositoryUrl"]) + r"@sha256:[0-9a-f]{64}", _container(rec)["image"])


def test_dockerfile_runs_migrate_then_serve_as_a_non_root_user():
    text = (ROOT / "portal.Dockerfile").read_text()
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert 'python -m labeling portal migrate && exec python -m labeling portal serve' in text
    assert "PORTAL_HOST=0.0.0.0" in text and "COPY build/viewer/" in text
    assert "-c /tmp/constraints.txt" in text and "torch" not in _pip_line(text) and "monai" not in _pip_line(text)
    assert 'VOLUME ["/tmp"]' in text  # the task's /tmp bind mount takes the image's mode (non-root writes)
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*"  # nothing reaches the builder unless listed (no .venv, .local, secrets)
    assert {"!labeling/", "!build/viewer/", "!constraints.txt", "!schemas/"} <= set(ignore)


def _pip_line(dockerfile: str) -> str:
    match = re.search(r"pip install -c /tmp/constraints.txt\s*\\?\n?(.*?)&&", dockerfile, re.S)
    assert match, "no pip install line in portal.Dockerfile"
    return match.group(1)


PORTAL_IMPORT_PROBE = r'''
import importlib, json, pkgutil, sys
from importlib import metadata


class Absent:
    """Import hook: these top-level modules behave as not installed (as in the image)."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in json.loads(sys.argv[2]):
            raise ImportError(f"{name} is not installed in the portal image")
        return None


sys.meta_path.insert(0, Absent())
before = set(sys.modules)  # the interpreter's own start-up (site, .pth hooks) is not the portal's
import labeling.portal
for m in ["labeling.cli", "labeling.dicom.sr", "labeling.dicom.deidentify", "labeling.gt.output_manifest"] + [
        "labeling.portal." + i.name for i in pkgutil.iter_modules(labeling.portal.__path__)]:
    importlib.import_module(m)
from pathlib import Path
import site
tops = metadata.packages_distributions()
roots = [Path(p) for p in site.getsitepackages()]
files_of = {}
def owners(file):
    """The distribution(s) a module file belongs to: by its top-level name, then by RECORD when shared."""
    path = Path(file)
    for root in roots:
        if root in path.parents:
            top = path.relative_to(root).parts[0].split(".")[0]
            candidates = tops.get(top, [])
            if len(candidates) <= 1:
                return set(candidates)
            found = set()
            for name in candidates:
                if name not in files_of:
                    dist = metadata.distribution(name)
                    files_of[name] = {str(dist.locate_file(f)) for f in dist.files or []}
                if file in files_of[name]:
                    found.add(name)
            return found
    return set()
files = [getattr(m, "__file__", None) for name, m in list(sys.modules.items()) if name not in before]
used = sorted({d for f in files if f for d in owners(f)})
assert used, "no imported file was matched to its distribution"
wanted = json.loads(sys.argv[1])
import re
def norm(n): return re.sub(r"[-_.]+", "-", n).lower()
closure, todo = set(), [(w.split("[")[0], set(w.split("[")[1].rstrip("]").split(",")) if "[" in w else set())
                        for w in wanted]
while todo:
    name, extras = todo.pop()
    if (norm(name), frozenset(extras)) in closure:
        continue
    closure.add((norm(name), frozenset(extras)))
    for req in metadata.requires(name) or []:
        spec, _, marker = req.partition(";")
        dep = re.match(r"[A-Za-z0-9_.-]+", spec).group(0)
        dep_extras = set(re.findall(r"\[(.*?)\]", spec)[0].split(",")) if "[" in spec else set()
        extra_m = re.search(r"extra\s*==\s*['\"]([^'\"]+)", marker)
        if extra_m and extra_m.group(1) not in extras:
            continue
        if marker.strip() and not extra_m:
            from packaging.markers import Marker
            if not Marker(marker).evaluate({"extra": ""}):
                continue
        todo.append((dep, dep_extras))
names = {n for n, _ in closure}
print(json.dumps(sorted(norm(d) for d in used if norm(d) not in names)))
'''


def start_portal_import_probe() -> subprocess.Popen:
    """The probe of the test below, in its own interpreter (a fresh import of the whole portal).

    tests/unit/conftest.py starts it as soon as collection selects that test, so its ~1-4 s of
    imports overlap the Pulumi mocks tests instead of adding to them.
    """
    wanted = [w.strip('"\\ ') for w in _pip_line((ROOT / "portal.Dockerfile").read_text()).split()]
    wanted = [w for w in wanted if w]
    # pydicom probes these only when installed (pixel decoder plugins, test-data download
    # progress); the portal never decodes pixels, so the image leaves them out — and the probe
    # proves the portal imports without them.
    optional = ["pylibjpeg", "libjpeg", "openjpeg", "rle", "tqdm", "setuptools", "pkg_resources", "_distutils_hack"]
    return subprocess.Popen([sys.executable, "-c", PORTAL_IMPORT_PROBE, json.dumps(wanted), json.dumps(optional)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_dockerfile_installs_every_distribution_the_portal_imports(request):
    """The image installs a short list; everything `python -m labeling portal …` imports must be in
    its dependency closure (resolved from the installed metadata of this venv)."""
    probe = request.config.stash.get(PORTAL_PROBE_KEY, None) or start_portal_import_probe()
    stdout, stderr = probe.communicate(timeout=120)
    assert probe.returncode == 0, stderr
    assert json.loads(stdout) == [], "portal imports distributions the image does not install"


# ------------------------------------------------------------------------------------ task + service
def test_container_settings_follow_the_portal_contract(rec):
    env = _env(rec)
    assert set(env) == ENV_NAMES
    assert env["PORTAL_AUTH_MODE"] == "alb-oidc" and env["PORTAL_ROOT_PATH"] == "/portal"
    # The database and its owner are made at deploy time (portal DB role function), not by the app.
    assert env["PORTAL_DB_SSLMODE"] == "require" and env["PORTAL_DB_CREATE"] == "false"
    assert env["PORTAL_HOST"] == "0.0.0.0" and env["PORTAL_PORT"] == str(PORTAL_PORT)
    assert env["PORTAL_OIDC_ALB_ARN"] == _state(_o(rec, "alb"))["arn"]
    assert env["PORTAL_OIDC_REGION"] == "us-east-1"
    assert env["PORTAL_COGNITO_USER_POOL_ID"] == rec.outputs["portalUserPoolId"]
    assert env["PORTAL_COGNITO_CLIENT_ID"] == _state(_p(rec, "client"))["id"]
    assert env["PORTAL_DB_HOST"] == rec.outputs["databaseEndpoint"]
    assert env["PORTAL_DB_NAME"] == "portal" and env["PORTAL_DB_USER"] == "portal_app"
    assert env["PORTAL_DB_USER"] != _o(rec, "db").inputs["username"]  # never the master user
    assert env["ORTHANC_URL"] == rec.outputs["orthancInternalUrl"]
    assert env["ORTHANC_SECRET_ARN"] == rec.outputs["orthancAdminSecretArn"]
    salt = rec.named(f"da-{rec.stack}-labeling-deid-salt-secret")
    assert env["DEIDENTIFY_SALT_SECRET_ARN"] == _state(salt)["arn"]
    assert env["PORTAL_DEIDENTIFY"] == "true"
    assert env["PORTAL_EXPORT_BUCKET"] == rec.outputs["annotationBucket"]
    assert env["PORTAL_EXPORT_KMS_KEY_ID"] == rec.outputs["kmsKeyArn"]
    assert env["PORTAL_CACHE_DIR"].startswith("/tmp/")


def test_secrets_reach_the_container_only_through_ecs_secrets(rec):
    container = _container(rec)
    secrets = {s["name"]: s["valueFrom"] for s in container["secrets"]}
    db_secret = _state(_p(rec, "db-secret"))["arn"]  # the portal role's own secret, not the master's
    session = _state(_p(rec, "session-secret"))["arn"]
    assert secrets == {"PORTAL_DB_PASSWORD": f"{db_secret}:password::", "PORTAL_SESSION_SECRET": session}
    plain = json.dumps(container["environment"])
    assert PLACEHOLDER_SECRET not in plain and not set(secrets) & set(_env(rec))
    # The generated session key lives only in its secret version (a Pulumi secret).
    key = mock_password(f"da-{rec.stack}-portal-session-key")
    holders = [r.name for r in rec.resources if key in json.dumps(r.inputs, default=str)]
    assert holders == [f"da-{rec.stack}-portal-session-secret-value"]
    assert SECRET_SIG in _p(rec, "session-secret-value").inputs["secretString"]
    assert _p(rec, "session-secret").inputs["kmsKeyId"] == rec.outputs["kmsKeyArn"]


def test_container_is_hardened_logged_and_health_checked(rec):
    container = _container(rec)
    assert container["readonlyRootFilesystem"] is True and container["privileged"] is False
    assert container["user"] == "10001:10001"
    assert container["mountPoints"] == [{"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False}]
    assert _p(rec, "taskdef").inputs["volumes"] == [{"name": "tmp"}]
    assert "/portal/healthz" in " ".join(container["healthCheck"]["command"])
    logs = _p(rec, "logs").inputs
    assert container["logConfiguration"]["options"]["awslogs-group"] == logs["name"] == f"/ecs/da-{rec.stack}-portal"
    assert logs["kmsKeyId"] == rec.outputs["kmsKeyArn"]
    assert logs["retentionInDays"] == (365 if rec.stack == "prod" else 30)


def test_task_size_and_scaling_per_environment(rec):
    config = StackConfig.from_mapping(stack_config_values("prod") if rec.stack == "prod" else dev_https_values(),
                                      stack=rec.stack)
    taskdef = _p(rec, "taskdef").inputs
    assert (taskdef["cpu"], taskdef["memory"]) == (("512", "1024") if rec.stack == "prod" else ("256", "512"))
    assert taskdef["runtimePlatform"]["cpuArchitecture"] == "X86_64"
    service = _p(rec, "service").inputs
    assert service["desiredCount"] == config.portal_min_tasks
    scaling = _p(rec, "scaling").inputs
    assert (scaling["minCapacity"], scaling["maxCapacity"]) == (config.portal_min_tasks, config.portal_max_tasks)
    assert scaling["resourceId"] == f"service/{_state(_o(rec, 'cluster'))['name']}/{_state(_p(rec, 'service'))['name']}"
    policy = _p(rec, "cpu").inputs["targetTrackingScalingPolicyConfiguration"]
    assert policy["predefinedMetricSpecification"]["predefinedMetricType"] == "ECSServiceAverageCPUUtilization"


def test_service_runs_in_private_subnets_of_the_orthanc_cluster_behind_its_target_group(rec):
    service = _p(rec, "service").inputs
    assert service["cluster"] == _state(_o(rec, "cluster"))["arn"]
    assert service["launchType"] == "FARGATE" and service["platformVersion"] == "LATEST"
    assert service["waitForSteadyState"] is True  # `pulumi up` fails while tasks crash-loop
    network = service["networkConfiguration"]
    assert network["subnets"] == PRIVATE and network["assignPublicIp"] is False
    assert network["securityGroups"] == [_state(_p(rec, "sg"))["id"], _state(_o(rec, "client-sg"))["id"]]
    (lb,) = service["loadBalancers"]
    assert lb == {"targetGroupArn": _state(_p(rec, "tg"))["arn"], "containerName": "portal",
                  "containerPort": PORTAL_PORT}
    health = _p(rec, "tg").inputs["healthCheck"]
    assert (health["path"], health["matcher"]) == ("/portal/healthz", "200")
    assert _p(rec, "tg").inputs["port"] == PORTAL_PORT and _p(rec, "tg").inputs["targetType"] == "ip"


# ------------------------------------------------------------------------------------ network
def test_security_groups_name_their_sources(rec):
    portal_sg, alb_sg, db_sg = (_state(r)["id"] for r in (_p(rec, "sg"), _o(rec, "alb-sg"), _o(rec, "db-sg")))
    into_portal = [r.inputs for r in rec.of_type(SG_INGRESS) if r.inputs["securityGroupId"] == portal_sg]
    assert [(r["fromPort"], r["referencedSecurityGroupId"]) for r in into_portal] == [(PORTAL_PORT, alb_sg)]
    out_of_portal = {(r.inputs["fromPort"], r.inputs.get("referencedSecurityGroupId") or r.inputs.get("cidrIpv4"))
                     for r in rec.of_type(SG_EGRESS) if r.inputs["securityGroupId"] == portal_sg}
    assert out_of_portal == {(5432, db_sg), (443, "0.0.0.0/0")}
    out_of_alb = {(r.inputs["fromPort"], r.inputs.get("referencedSecurityGroupId") or r.inputs.get("cidrIpv4"))
                  for r in rec.of_type(SG_EGRESS) if r.inputs["securityGroupId"] == alb_sg}
    # To the portal, and HTTPS to Cognito: the ALB exchanges the sign-in code itself.
    assert {(PORTAL_PORT, portal_sg), (443, "0.0.0.0/0")} <= out_of_alb
    assert any(r.inputs["securityGroupId"] == db_sg and r.inputs.get("referencedSecurityGroupId") == portal_sg
               and r.inputs["fromPort"] == 5432 for r in rec.of_type(SG_INGRESS))


# ------------------------------------------------------------------------------------ sign-in
def test_listener_rule_authenticates_with_cognito_before_forwarding(rec):
    rule = _p(rec, "rule").inputs
    assert rule["listenerArn"] == _state(_o(rec, "https-listener"))["arn"]
    assert _o(rec, "https-listener").inputs["protocol"] == "HTTPS"
    assert rule["conditions"] == [{"pathPattern": {"values": ["/portal", "/portal/*"]}}]
    actions = sorted(rule["actions"], key=lambda a: a["order"])
    assert [a["type"] for a in actions] == ["authenticate-cognito", "forward"]
    cognito = actions[0]["authenticateCognito"]
    assert cognito["userPoolArn"] == _state(_p(rec, "users"))["arn"]
    assert cognito["userPoolClientId"] == _state(_p(rec, "client"))["id"]
    assert cognito["userPoolDomain"] == _p(rec, "domain").inputs["domain"] == f"da-{rec.stack}-portal-{ACCOUNT_ID}"
    assert cognito["onUnauthenticatedRequest"] == "authenticate"
    assert actions[1]["targetGroupArn"] == _state(_p(rec, "tg"))["arn"]


def test_user_pool_is_invite_only_with_strong_passwords_and_mfa(rec):
    pool = _p(rec, "users").inputs
    assert pool["adminCreateUserConfig"]["allowAdminCreateUserOnly"] is True
    policy = pool["passwordPolicy"]
    assert policy["minimumLength"] >= 14 and policy["temporaryPasswordValidityDays"] <= 3
    assert all(policy[k] for k in ("requireLowercase", "requireUppercase", "requireNumbers", "requireSymbols"))
    assert pool["mfaConfiguration"] == ("ON" if rec.stack == "prod" else "OPTIONAL")
    assert pool["softwareTokenMfaConfiguration"] == {"enabled": True}
    assert pool["userPoolTier"] == "PLUS" and pool["userPoolAddOns"] == {"advancedSecurityMode": "ENFORCED"}
    assert pool["deletionProtection"] == ("ACTIVE" if rec.stack == "prod" else "INACTIVE")
    groups = {r.inputs["name"] for r in rec.of_type("aws:cognito/userGroup:UserGroup")
              if r.inputs["userPoolId"] == _state(_p(rec, "users"))["id"]}
    assert groups == {"admin", "annotator", "reviewer"}


def test_app_client_is_the_albs_code_flow_client_with_a_secret(rec):
    client = _p(rec, "client").inputs
    assert client["generateSecret"] is True
    assert client["allowedOauthFlows"] == ["code"] and client["allowedOauthFlowsUserPoolClient"] is True
    assert "openid" in client["allowedOauthScopes"]
    # The host the certificate covers, never the ALB's *.elb.amazonaws.com name.
    assert client["callbackUrls"] == [f"https://{PORTAL_DOMAIN}/oauth2/idpresponse"]
    assert rec.outputs["portalUrl"] == f"https://{PORTAL_DOMAIN}/portal/"
    assert client["supportedIdentityProviders"] == ["COGNITO"]
    assert client["preventUserExistenceErrors"] == "ENABLED"


def test_custom_portal_domain_is_the_callback_and_the_url():
    rec = program("dev", config=dev_https_values(portalDomain="labels.radiology.example.net",
                                                 cognitoDomainPrefix="example-labeling"))
    assert _p(rec, "client").inputs["callbackUrls"] == ["https://labels.radiology.example.net/oauth2/idpresponse"]
    assert rec.outputs["portalUrl"] == "https://labels.radiology.example.net/portal/"
    assert _p(rec, "domain").inputs["domain"] == "example-labeling"


# ------------------------------------------------------------------------------------ IAM
def test_execution_role_pulls_its_image_and_reads_only_its_two_secrets(rec):
    statements = _statements(_p(rec, "execution-policy"))
    (pull,) = [s for s in statements if "ecr:BatchGetImage" in _as_list(s["Action"])]
    assert pull["Resource"] == _state(_p(rec, "repo"))["arn"]
    (secrets,) = [s for s in statements if "secretsmanager:GetSecretValue" in _as_list(s["Action"])]
    assert secrets["Resource"] == [_state(_p(rec, "db-secret"))["arn"], _state(_p(rec, "session-secret"))["arn"]]


def test_task_role_reads_orthanc_and_salt_and_writes_only_the_export_prefix(rec):
    statements = _statements(_p(rec, "task-policy"))
    (secrets,) = [s for s in statements if "secretsmanager:GetSecretValue" in _as_list(s["Action"])]
    salt = rec.named(f"da-{rec.stack}-labeling-deid-salt-secret")
    assert secrets["Resource"] == [rec.outputs["orthancAdminSecretArn"], _state(salt)["arn"]]
    s3 = [s for s in statements if any(a.startswith("s3:") for a in _as_list(s["Action"]))]
    assert [s["Resource"] for s in s3] == [f"arn:aws:s3:::{rec.outputs['annotationBucket']}/{EXPORT_PREFIX}*"]
    (groups,) = [s for s in statements if "cognito-idp:AdminListGroupsForUser" in _as_list(s["Action"])]
    assert groups["Resource"] == _state(_p(rec, "users"))["arn"]
    for statement in statements + _statements(_p(rec, "execution-policy")):
        assert all("*" not in a for a in _as_list(statement["Action"])), statement
    for role in ("execution-role", "task-role"):
        trust = json.loads(_p(rec, role).inputs["assumeRolePolicy"])["Statement"][0]
        assert trust["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
        assert trust["Condition"]["StringEquals"]["aws:SourceAccount"] == ACCOUNT_ID


# ------------------------------------------------------------------------------------ database budget
@pytest.mark.parametrize("stack, values", [("prod", stack_config_values("prod")), ("dev", dev_https_values())])
def test_portal_pool_fits_beside_orthanc_under_max_connections(stack, values):
    config = StackConfig.from_mapping(values, stack=stack)
    pool = portal_db_pool_size(config)
    orthanc_tasks = config.max_tasks * DEPLOYMENT_MAX_PERCENT // 100
    portal_tasks = config.portal_max_tasks * DEPLOYMENT_MAX_PERCENT // 100
    peak = (orthanc_tasks * connection_budget(config.db_max_connections, orthanc_tasks)
            + portal_tasks * (pool + PORTAL_MAX_OVERFLOW) + DEFAULT_RESERVED_CONNECTIONS)
    assert 1 <= pool and peak <= rds_max_connections(config.db_instance_class)


def test_portal_env_carries_the_pool_size(rec):
    config = StackConfig.from_mapping(stack_config_values("prod") if rec.stack == "prod" else dev_https_values(),
                                      stack=rec.stack)
    assert _env(rec)["PORTAL_DB_POOL_SIZE"] == str(portal_db_pool_size(config))


def test_too_many_portal_tasks_for_the_database_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^dicom-annotate:portalMaxTasks: .*larger dbInstanceClass"):
        program("dev", config=dev_https_values(portalMaxTasks=8))


# ------------------------------------------------------------------------------------ config
@pytest.mark.parametrize("values, key, words", [
    ({"portalEnabled": True}, "portalEnabled", "HTTPS listeners"),
    ({"portalCpu": 300}, "portalCpu", "Fargate CPU size"),
    ({"portalCpu": 256, "portalMemory": 4096}, "portalMemory", "not allowed with 256"),
    ({"portalMinTasks": 3, "portalMaxTasks": 2}, "portalMaxTasks", "below portalMinTasks"),
    ({"portalMinTasks": 0}, "portalMinTasks", "at least 1"),
    ({"portalMfa": "sometimes"}, "portalMfa", "not one of"),
    ({"portalDomain": "https://labeling.example.org/portal"}, "portalDomain", "not a DNS host name"),
    ({"cognitoDomainPrefix": "my-aws-portal"}, "cognitoDomainPrefix", "without 'aws'"),
    ({"portalDomain": None}, "portalDomain", "the ALB's own *.elb.amazonaws.com name is not on your certificate"),
])
def test_bad_portal_settings_name_the_key(values, key, words):
    base = {"dicom-annotate:allowHttp": True}
    if key != "portalEnabled":
        base = {"dicom-annotate:certificateArn": CERT, "dicom-annotate:portalDomain": PORTAL_DOMAIN}
    base.update({f"dicom-annotate:{k}": v for k, v in values.items()})
    base = {k: v for k, v in base.items() if v is not None}
    with pytest.raises(ConfigError) as err:
        StackConfig.from_mapping(base, stack="dev")
    assert str(err.value).startswith(f"dicom-annotate:{key}:") and words in str(err.value), str(err.value)


def test_prod_refuses_optional_mfa_and_the_program_stops_at_start():
    values = stack_config_values("prod")
    values["dicom-annotate:portalMfa"] = "optional"
    with pytest.raises(ConfigError, match=r"^dicom-annotate:portalMfa: must be required in prod"):
        program("prod", config=values)


def test_portal_can_be_switched_off_in_prod():
    rec = program("prod", config=prod_variant_values())  # portalEnabled: false
    assert not [r for r in rec.resources if r.name.startswith("da-prod-portal")]
    assert "portalUrl" not in rec.outputs


# ------------------------------------------------------------------------------------ database role
def test_portal_db_role_is_made_at_deploy_time_inside_the_vpc_with_its_own_secret(rec):
    function = _p(rec, "db-role").inputs
    assert function["handler"] == "handler.lambda_handler" and "handler.py" in function["code"].assets
    assert not [a for a in function["code"].assets if a.startswith("labeling/")]
    assert function["vpcConfig"]["subnetIds"] == PRIVATE
    assert function["vpcConfig"]["securityGroupIds"] == [_state(_p(rec, "db-role-sg"))["id"]]
    assert function["layers"] == [_state(rec.named(f"da-{rec.stack}-labeling-deps"))["arn"]]
    assert function["tags"]["dicom-annotate:invoked"] == "deploy-time"
    master, own = _state(_o(rec, "db-secret"))["arn"], _state(_p(rec, "db-secret"))["arn"]
    setup = _p(rec, "db-role-setup").inputs
    assert json.loads(setup["input"]) == {"master_secret_arn": master, "role_secret_arn": own,
                                          "database": "portal", "protected_databases": ["orthanc"]}
    assert set(setup["triggers"]) == {"secret_version", "code"}  # re-run on a new password or new code
    # Only this function reads the master secret; the portal's tasks get the role's own secret.
    (secrets,) = [s for s in _statements(_p(rec, "db-role-policy")) if s["Sid"] == "Secrets"]
    assert secrets["Resource"] == [master, own]
    readers = {r.name for r in rec.of_type("aws:iam/rolePolicy:RolePolicy") if master in r.inputs["policy"]}
    assert readers == {f"da-{rec.stack}-portal-db-role-policy", f"da-{rec.stack}-orthanc-execution-policy"}
    own_value = json.loads(_p(rec, "db-secret-value").inputs["secretString"]["value"])
    assert own_value["username"] == "portal_app" and own_value["dbname"] == "portal"
    assert _p(rec, "db-secret").inputs["kmsKeyId"] == rec.outputs["kmsKeyArn"]
    # The service starts only once the role exists.
    assert rec.outputs["portalDatabaseSecretArn"] == own


def test_portal_db_role_function_reaches_only_the_database_and_https(rec):
    sg = _state(_p(rec, "db-role-sg"))["id"]
    assert not [r for r in rec.of_type(SG_INGRESS) if r.inputs["securityGroupId"] == sg]
    egress = {(r.inputs["fromPort"], r.inputs.get("referencedSecurityGroupId") or r.inputs.get("cidrIpv4"))
              for r in rec.of_type(SG_EGRESS) if r.inputs["securityGroupId"] == sg}
    assert egress == {(5432, _state(_o(rec, "db-sg"))["id"]), (443, "0.0.0.0/0")}


def test_db_role_setup_runs_only_once_both_secret_values_are_written(dev_portal):
    # The function reads the master secret's value (host, password), written after the database
    # exists: the invocation must wait for that version, not only for the secret's ARN.
    setup = _p(dev_portal, "db-role-setup")
    waits = {r.name for r in dev_portal.resources if r.urn in setup.dependencies}
    assert {"da-dev-orthanc-db-secret-value", "da-dev-portal-db-secret-value"} <= waits
