#!/usr/bin/env bash
# The project's test command: set up Slurm and MPI (ci/setup.sh), then run every test tier with the
# newest dask and distributed setup.cfg allows (this environment), and a subset with the oldest.
# Launcher tests must not skip here: a missing launcher fails the run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
source ci/lib.sh

bash ci/setup.sh
export RUNNERS_REQUIRE_LAUNCHERS=1
status=0
python -m pytest -p no:cacheprovider "$@" || status=$?

# The oldest dask and distributed setup.cfg allows, in ci/setup.sh's OLDEST_ENV. The launcher tests start
# their ranks with the python that runs pytest, so the jobs run there too. A subset, so that .ci/run stays
# under 20 minutes:
#  1. every test not marked slurm or mpi: units, in-process worlds, the local launcher, serve, the CLI, per-job
#     TLS under srun, and tests/test_distributed_api.py (what we need of distributed's private API); not the
#     docs build (the docs extra is not installed there);
#  2. real launchers: the security tests (srun, mpirun and mpiexec.mpich), srun, the failure-table rows, and
#     the faults whose outcome depends on how distributed closes (a killed client, scheduler or nanny worker;
#     a signal to the step).
# Arguments select tests of the run above only, and skip this one.
if (($# == 0)); then
  oldest=("$OLDEST_ENV/bin/python" -m pytest -p no:cacheprovider)
  "${oldest[@]}" -m "not slurm and not mpi" --ignore=tests/test_docs.py tests || status=$?
  "${oldest[@]}" -m "slurm or mpi" \
    tests/security tests/launchers/test_srun.py tests/faults/test_table_rows.py \
    tests/faults/test_srun_faults.py::test_client_rank_killed_ends_every_rank_with_a_message \
    tests/faults/test_srun_faults.py::test_scheduler_rank_killed_raises_in_the_client_code_within_seconds \
    tests/faults/test_srun_faults.py::test_killed_worker_under_a_nanny_is_restarted_and_the_job_succeeds \
    tests/faults/test_srun_faults.py::test_signal_to_the_step_closes_the_cluster_gracefully \
    tests/faults/test_mpi_faults.py::test_scheduler_rank_killed_raises_in_the_client_code || status=$?
fi
exit "$status"
