#!/bin/bash
# dicom-annotate notebook lifecycle, on-start: runs as root on every start.
# 1. Installs training/requirements.txt (rendered in below at deploy time) into the project's conda
#    environment and registers it as a Jupyter kernel; in the background, because SageMaker fails
#    the start if a lifecycle script runs longer than 5 minutes. pip reaches PyPI over HTTPS through
#    the VPC's NAT gateway (the instance has no direct internet access).
# 2. Installs an idle check every 5 minutes that stops the instance after __IDLE_MINUTES__ minutes
#    without kernel or user activity (notebook instances bill by the hour while running).
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
"""Stop this notebook instance when Jupyter has been idle for longer than argv[1] minutes."""
import json, ssl, sys, urllib.request
from datetime import datetime, timezone

BASE = "https://localhost:8443"
CTX = ssl._create_unverified_context()  # Jupyter's self-signed certificate on loopback


def get(path):
    # no_track_activity: this poll must not itself count as user activity.
    with urllib.request.urlopen(f"{BASE}{path}?no_track_activity=1", context=CTX, timeout=10) as r:
        return json.load(r)


def when(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


limit = float(sys.argv[1]) * 60
try:
    status, kernels = get("/api/status"), get("/api/kernels")
except Exception as exc:  # Jupyter still starting or restarting: never stop on an unknown state
    print(f"idle check skipped: {exc}")
    sys.exit(0)
if any(k.get("execution_state") == "busy" for k in kernels):
    sys.exit(0)
stamps = [when(status["last_activity"])] + [when(k["last_activity"]) for k in kernels if k.get("last_activity")]
idle = (datetime.now(timezone.utc) - max(stamps)).total_seconds()
if idle < limit:
    sys.exit(0)
meta = json.load(open("/opt/ml/metadata/resource-metadata.json"))
region = meta["ResourceArn"].split(":")[3]
print(f"idle for {idle / 60:.0f} min: stopping {meta['ResourceName']}")
import boto3  # noqa: E402 - only needed once the instance is found idle

boto3.client("sagemaker", region_name=region).stop_notebook_instance(NotebookInstanceName=meta["ResourceName"])
IDLE_EOF
chmod 644 /usr/local/bin/dicom-annotate-idle-stop

# The check needs boto3; use the first interpreter that has it (as AWS's auto-stop sample does).
IDLE_PYTHON=""
for candidate in /home/ec2-user/anaconda3/envs/JupyterSystemEnv/bin/python /usr/bin/python3; do
  if [ -x "$candidate" ] && "$candidate" -c "import boto3" 2>/dev/null; then
    IDLE_PYTHON=$candidate
    break
  fi
done
if [ -z "$IDLE_PYTHON" ]; then
  echo "no Python with boto3 found: idle auto-stop not installed" >&2
  exit 0
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
