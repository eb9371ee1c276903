#!/usr/bin/env bash
# Every measurement behind docs/benchmarks.rst and docs/scaling.rst, one after another
# (never two at once: they would measure each other), each publishing into docs/.
# About 30 minutes on 2 cores. Extra arguments go to run.py, e.g. --repeat 5.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-bench/results}
python bench/run.py --out "$out" --publish "$@"
python bench/faults.py --out "$out" --publish
python bench/scaling.py --out "$out" --publish
python bench/mpi_discovery.py --out "$out" --publish
python bench/fsops.py --strace --out "$out" --publish
python bench/idle_worker.py --out "$out" --publish
python bench/across_runs.py --publish
