#!/usr/bin/env bash
# Stop what ci/start-slurm.sh started: cancel jobs, then slurmd, slurmctld, munged, each by the
# PID it recorded (never by name). Idempotent: does nothing when they are not running.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if pid_alive "$CI_STATE/run/slurmctld.pid" slurmctld; then
  jobs=$(timeout 10 squeue -h -o %A 2>/dev/null || true)
  if [[ -n $jobs ]]; then
    log "cancelling jobs: ${jobs//$'\n'/ }"
    # shellcheck disable=SC2086  # one argument per job id
    timeout 10 scancel $jobs || true
    end=$((SECONDS + 10))
    while [[ -n "$(timeout 5 squeue -h -o %A 2>/dev/null)" ]] && ((SECONDS < end)); do sleep 0.2; done
  fi
fi
stop_pidfile "$CI_STATE/run/slurmd.pid" slurmd
stop_pidfile "$CI_STATE/run/slurmctld.pid" slurmctld
stop_pidfile /run/munge/munged.pid munged
log "stopped"
