#!/bin/bash
# dicom-annotate notebook lifecycle, on-create: runs once, as root, when the instance is created.
# Creates the project's conda environment on the persistent volume (/home/ec2-user/SageMaker
# survives stop/start; the rest of the disk does not). In the background: SageMaker fails the
# instance if a lifecycle script runs longer than 5 minutes. on-start takes the same lock, so it
# installs the requirements only once the environment exists. No secrets here: this text is stored
# in the lifecycle configuration in clear.
set -euo pipefail

ENV_DIR=/home/ec2-user/SageMaker/envs/dicom-annotate
LOCK=/home/ec2-user/SageMaker/.dicom-annotate-env.lock
LOG=/home/ec2-user/SageMaker/.dicom-annotate-lifecycle.log

sudo -u ec2-user -H nohup flock "$LOCK" bash -c "
  set -e
  if [ ! -x '$ENV_DIR/bin/python' ]; then
    /home/ec2-user/anaconda3/bin/conda create --yes --quiet --prefix '$ENV_DIR' python=3.11 ipykernel
  fi
" >>"$LOG" 2>&1 &
