#!/usr/bin/env bash
# Debian packages the local stack and the tests need: Orthanc 1.10 with the PostgreSQL index,
# DICOMweb and GDCM plugins, PostgreSQL, and Chromium for the browser tests.
# Idempotent: installs only what is missing. Needs root (or sudo) on Debian 12.
set -euo pipefail
packages=(orthanc orthanc-postgresql orthanc-dicomweb orthanc-gdcm postgresql chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present (${packages[*]})"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "system packages: installing ${missing[*]}"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# policy-rc.d keeps Debian's own orthanc/postgresql services from starting on default ports:
# the project starts its own private instances on random loopback ports.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  $SUDO sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
