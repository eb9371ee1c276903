#!/usr/bin/env bash
# Stop what ci/start-slurm.sh started: cancel jobs, then slurmd, slurmctld, munged, each by the
# PID it recorded (never by name). Idempotent: does nothing when they are not running.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

cancel_jobs_if_running "$CI_STATE/run/slurmctld.pid"
stop_pidfile "$CI_STATE/run/slurmd.pid" slurmd
stop_pidfile "$CI_STATE/run/slurmctld.pid" slurmctld
stop_pidfile /run/munge/munged.pid munged
log "stopped"
