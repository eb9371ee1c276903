#!/usr/bin/env bash
# Everything the test suite needs, from a fresh Debian 12 machine (as root):
# system packages, munge + a single-node Slurm, and this package with its test extras.
# Idempotent: a second run only checks.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

bash "$here/install-system.sh"
bash "$here/start-slurm.sh"
bash "$here/start-multinode-slurm.sh"
PIP_ROOT_USER_ACTION=ignore python -m pip install --quiet --disable-pip-version-check -e "$here/..[test,mpi,docs]"
# Bytecode for the editable package, as a wheel install would have it.
python -m compileall -q "$here/../dask_runners"
