#!/bin/bash
# dicom-annotate notebook lifecycle, on-start: runs as root on every start.
# 1. Installs training/requirements-notebook.txt (torch's CPU build + training/requirements.txt,
#    rendered in below at deploy time) into the project's conda environment and registers it as a
#    Jupyter kernel; in the background, because SageMaker fails the start if a lifecycle script runs
#    longer than 5 minutes. pip reaches PyPI over HTTPS through the VPC's NAT gateway.
# 2. Installs an idle check every 5 minutes that stops the instance after __IDLE_MINUTES__ minutes
#    without kernel or user activity (notebook instances bill by the hour while running). It fails
#    loudly: no Python with boto3 stops this script (the start fails, logged to CloudWatch Logs
#    /aws/sagemaker/NotebookInstances), and a failing check puts IdleStopBroken=1 in CloudWatch
#    (namespace __METRIC_NAMESPACE__), which the stack's alarm watches.
# 3. Copies the project (walkthrough notebook, training/, labeling/) from __CODE_S3_URI__ into
#    ~/SageMaker/dicom-annotate: the code on every start, the notebooks only where missing (edits stay).
# No secrets here: this text is stored in the lifecycle configuration in clear.
set -euo pipefail

IDLE_MINUTES=__IDLE_MINUTES__
ENV_DIR=/home/ec2-user/SageMaker/envs/dicom-annotate
LOCK=/home/ec2-user/SageMaker/.dicom-annotate-env.lock
LOG=/home/ec2-user/SageMaker/.dicom-annotate-lifecycle.log
REQUIREMENTS=/home/ec2-user/SageMaker/.dicom-annotate-requirements.txt

# ---- 1. training requirements -------------------------------------------------------------------
cat >"$REQUIREMENTS" <<'REQUIREMENTS_EOF'
__TRAINING_REQUIREMENTS__
REQUIREMENTS_EOF
chown ec2-user:ec2-user "$REQUIREMENTS"

sudo -u ec2-user -H nohup flock "$LOCK" bash -c "
  set -e
  if [ ! -x '$ENV_DIR/bin/python' ]; then
    /home/ec2-user/anaconda3/bin/conda create --yes --quiet --prefix '$ENV_DIR' python=3.11 ipykernel
  fi
  '$ENV_DIR/bin/python' -m pip install --quiet --upgrade -r '$REQUIREMENTS'
  # Kernel specs live outside the persistent volume, so they are registered on every start.
  '$ENV_DIR/bin/python' -m ipykernel install --user --name dicom-annotate --display-name 'dicom-annotate'
" >>"$LOG" 2>&1 &

# ---- 2. idle auto-stop --------------------------------------------------------------------------
cat >/usr/local/bin/dicom-annotate-idle-stop <<'IDLE_EOF'
"""Stop this notebook instance when Jupyter has been idle for longer than argv[1] minutes.

Any failure other than Jupyter still starting puts IdleStopBroken=1 in CloudWatch and exits 1.
"""
import json, ssl, sys, urllib.request
from datetime import datetime, timezone

BASE = "https://localhost:8443"
CTX = ssl._create_unverified_context()  # Jupyter's self-signed certificate on loopback
META = json.load(open("/opt/ml/metadata/resource-metadata.json"))
REGION = META["ResourceArn"].split(":")[3]


def get(path):
    # no_track_activity: this poll must not itself count as user activity.
    with urllib.request.urlopen(f"{BASE}{path}?no_track_activity=1", context=CTX, timeout=10) as r:
        return json.load(r)


def when(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def check(limit):
    import boto3

    try:
        status, kernels = get("/api/status"), get("/api/kernels")
    except OSError as exc:  # Jupyter still starting or restarting: never stop on an unknown state
        print(f"idle check skipped: {exc}")
        return
    if any(k.get("execution_state") == "busy" for k in kernels):
        return
    stamps = [when(status["last_activity"])] + [when(k["last_activity"]) for k in kernels if k.get("last_activity")]
    idle = (datetime.now(timezone.utc) - max(stamps)).total_seconds()
    if idle >= limit:
        print(f"idle for {idle / 60:.0f} min: stopping {META['ResourceName']}")
        boto3.client("sagemaker", region_name=REGION).stop_notebook_instance(NotebookInstanceName=META["ResourceName"])


try:
    check(float(sys.argv[1]) * 60)
except Exception as exc:
    print(f"idle check FAILED: {exc!r}", file=sys.stderr)
    import boto3

    boto3.client("cloudwatch", region_name=REGION).put_metric_data(
        Namespace="__METRIC_NAMESPACE__", MetricData=[{"MetricName": "IdleStopBroken", "Value": 1,
                                                       "Dimensions": [{"Name": "NotebookInstanceName",
                                                                       "Value": META["ResourceName"]}]}])
    sys.exit(1)
IDLE_EOF
chmod 644 /usr/local/bin/dicom-annotate-idle-stop

# The check needs boto3: the first of these interpreters that has it (the platform's, rendered at
# deploy time from components/notebook.py NOTEBOOK_PLATFORM_PYTHONS). None: the start fails.
IDLE_PYTHON=""
for candidate in __IDLE_PYTHONS__; do
  if [ -x "$candidate" ] && "$candidate" -c "import boto3" 2>/dev/null; then
    IDLE_PYTHON=$candidate
    break
  fi
done
if [ -z "$IDLE_PYTHON" ]; then
  echo "ERROR: no Python with boto3 among: __IDLE_PYTHONS__; idle auto-stop cannot run, stopping the start" >&2
  exit 1
fi

if command -v crond >/dev/null 2>&1 && [ -d /etc/cron.d ]; then
  echo "*/5 * * * * root $IDLE_PYTHON /usr/local/bin/dicom-annotate-idle-stop $IDLE_MINUTES >>/var/log/dicom-annotate-idle-stop.log 2>&1" \
    >/etc/cron.d/dicom-annotate-idle-stop
else
  # Amazon Linux 2023 ships without cron: a transient systemd timer does the same job.
  systemctl stop dicom-annotate-idle-stop.timer 2>/dev/null || true
  systemd-run --unit=dicom-annotate-idle-stop --on-calendar='*:0/5' \
    "$IDLE_PYTHON" /usr/local/bin/dicom-annotate-idle-stop "$IDLE_MINUTES"
fi

# ---- 3. the project: walkthrough notebook, training/, labeling/ ---------------------------------
sudo -u ec2-user -H "$IDLE_PYTHON" - "__CODE_S3_URI__" <<'CODE_EOF' || echo "ERROR: project copy failed" >&2
import io, json, os, shutil, sys, zipfile
import boto3

bucket, key = sys.argv[1].removeprefix("s3://").split("/", 1)
region = json.load(open("/opt/ml/metadata/resource-metadata.json"))["ResourceArn"].split(":")[3]
data = boto3.client("s3", region_name=region).get_object(Bucket=bucket, Key=key)["Body"].read()
target = "/home/ec2-user/SageMaker/dicom-annotate"
for package in ("training", "labeling"):
    shutil.rmtree(os.path.join(target, package), ignore_errors=True)
with zipfile.ZipFile(io.BytesIO(data)) as archive:
    for name in archive.namelist():
        path = os.path.join(target, name)
        if name.endswith(".ipynb") and os.path.exists(path):
            continue  # the user's copy of a notebook stays
        archive.extract(name, target)
print(f"project copied to {target}")
CODE_EOF
