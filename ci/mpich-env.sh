#!/usr/bin/env bash
# Make the mpi4py wheel use MPICH instead of Open MPI.
#   source ci/mpich-env.sh                     # in this shell
#   eval "$(bash ci/mpich-env.sh --print)"     # same, via printed exports
# The wheel looks for libmpi.so.12 (MPICH ABI) but Debian names it libmpich.so.12, so we put a
# link named libmpi.so.12 in a directory of our own and prefix LD_LIBRARY_PATH with it.
# Without this, under mpiexec.mpich / srun --mpi=pmi2 mpi4py warns "suspicious MPI execution
# environment" and every rank is alone in a world of size 1.
# Only for MPICH launches: under mpirun/srun --mpi=pmix (Open MPI) do not have this sourced.

_dr_mpich_env() {
  local dir=${RUNNERS_CI_MPICH_LIB:-/opt/dask-runners-ci/mpich-lib} lib
  lib=$(ldconfig -p 2>/dev/null | awk '$1 == "libmpich.so.12" {print $NF; exit}')
  [[ -n $lib ]] || lib=$(ls /usr/lib/*/libmpich.so.12 2>/dev/null | head -n1)
  if [[ -z $lib ]]; then
    echo "mpich-env.sh: libmpich.so.12 not found; run ci/install-system.sh" >&2
    return 1
  fi
  mkdir -p "$dir" || return 1
  [[ "$(readlink "$dir/libmpi.so.12")" == "$lib" ]] || ln -sfn "$lib" "$dir/libmpi.so.12" || return 1
  case ":${LD_LIBRARY_PATH:-}:" in
    *":$dir:"*) ;;                                       # already there: keep it idempotent
    *) LD_LIBRARY_PATH=$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} ;;
  esac
  export LD_LIBRARY_PATH MPI4PY_MPIABI=mpich
}

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then   # sourced
  _dr_mpich_env
else                                         # executed
  set -euo pipefail
  _dr_mpich_env
  if [[ ${1:-} == --print ]]; then
    printf 'export MPI4PY_MPIABI=%q\nexport LD_LIBRARY_PATH=%q\n' "$MPI4PY_MPIABI" "$LD_LIBRARY_PATH"
  else
    echo "usage: source ci/mpich-env.sh  |  eval \"\$(bash ci/mpich-env.sh --print)\"" >&2
  fi
fi
