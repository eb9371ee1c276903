#!/usr/bin/env bash
# Everything the test suite needs, from a fresh Debian 12 machine (as root):
# system packages, munge + a single-node Slurm, and this package with its test extras, here and
# in an environment with the oldest dask and distributed it supports.
# Idempotent: a second run only checks.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
source "$here/lib.sh"

bash "$here/install-system.sh"
bash "$here/start-slurm.sh"
bash "$here/start-multinode-slurm.sh"
PIP_ROOT_USER_ACTION=ignore python -m pip install --quiet --disable-pip-version-check -e "$here/..[test,mpi,docs]"
# Bytecode for the editable package, as a wheel install would have it.
python -m compileall -q "$here/../dask_runners"
# The dashboard extra (bokeh) in an environment of its own that sees the packages above: a scheduler
# imports bokeh when it starts its dashboard, which would slow every other test's start.
DASHBOARD_ENV=/opt/dask-runners-ci/dashboard-env
[[ -x $DASHBOARD_ENV/bin/python ]] || python -m venv --system-site-packages "$DASHBOARD_ENV"
"$DASHBOARD_ENV/bin/python" -c "import bokeh" 2>/dev/null ||
  PIP_ROOT_USER_ACTION=ignore "$DASHBOARD_ENV/bin/python" -m pip install --quiet --disable-pip-version-check "bokeh>=3.1"
# The lowest dask and distributed that setup.cfg allows (ci/oldest-constraints.txt pins them), with this
# checkout (editable) and its test and mpi extras, in an environment of their own: ci/test.sh runs tests
# there too. Built again only when the pins, setup.cfg or the checkout's place change.
oldest_stamp="$(cat "$here/oldest-constraints.txt" "$root/setup.cfg" | sha256sum | cut -d' ' -f1) $root"
if [[ "$(cat "$OLDEST_ENV/ci-stamp" 2>/dev/null)" != "$oldest_stamp" ]]; then
  [[ -x $OLDEST_ENV/bin/python ]] || python -m venv "$OLDEST_ENV"
  PIP_ROOT_USER_ACTION=ignore "$OLDEST_ENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    -c "$here/oldest-constraints.txt" -e "$root[test,mpi]"
  echo "$oldest_stamp" >"$OLDEST_ENV/ci-stamp"
fi
