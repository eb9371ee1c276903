#!/usr/bin/env bash
# The project's test command: set up Slurm and MPI (ci/setup.sh), then run every test tier.
# Launcher tests must not skip here: a missing launcher fails the run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."

bash ci/setup.sh
export RUNNERS_REQUIRE_LAUNCHERS=1
python -m pytest -p no:cacheprovider "$@"
