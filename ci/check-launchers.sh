#!/usr/bin/env bash
# Run mpi4py under every launcher the tests use and check world size and a clean stderr.
# Needs ci/install-system.sh, ci/start-slurm.sh and `pip install mpi4py` first.
set -euo pipefail
CI_DIR=$(cd "$(dirname "$0")" && pwd)
N=${1:-3}
PY='from mpi4py import MPI; c = MPI.COMM_WORLD; print(c.Get_rank(), c.Get_size(), c.allreduce(1))'
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
err=$(mktemp); trap 'rm -f "$err"' EXIT

check() {  # check NAME COMMAND...: every one of N ranks must see size N, stderr must be empty
  local name=$1 out t0=$SECONDS; shift
  out=$(timeout 60 "$@" 2>"$err") || { echo "FAIL $name: exit $?"; cat "$err"; return 1; }
  if [[ $(grep -c "^[0-9]* $N $N\$" <<<"$out") != "$N" || -s $err ]]; then
    echo "FAIL $name"; echo "$out"; cat "$err"; return 1
  fi
  echo "ok   $name ($((SECONDS - t0))s)"
}

check "srun env"            srun -n"$N" bash -c 'echo $SLURM_PROCID $SLURM_NTASKS $SLURM_NTASKS'
check "srun --mpi=pmix"     srun --mpi=pmix -n"$N" python3 -c "$PY"
check "mpirun (Open MPI)"   mpirun --oversubscribe -n "$N" python3 -c "$PY"
source "$CI_DIR/mpich-env.sh"
check "srun --mpi=pmi2 (MPICH)" srun --mpi=pmi2 -n"$N" python3 -c "$PY"
check "mpiexec.mpich"       mpiexec.mpich -n "$N" python3 -c "$PY"
