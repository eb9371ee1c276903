#!/usr/bin/env bash
# Install the system packages the tests need: Slurm, munge, Open MPI and MPICH for the launcher
# tests; a Java runtime and a font for the docs build (PlantUML draws the sequence diagrams).
# Idempotent: does nothing (not even apt-get update) when everything is already installed.
set -euo pipefail

PKGS=(slurm-wlm munge openmpi-bin libopenmpi-dev mpich procps iproute2 util-linux hostname
      default-jre-headless fonts-dejavu-core)

missing=()
for p in "${PKGS[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-system: all packages already installed"
  exit 0
fi

echo "install-system: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-system: done"
