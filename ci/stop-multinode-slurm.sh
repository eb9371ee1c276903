#!/usr/bin/env bash
# Stop what ci/start-multinode-slurm.sh started: cancel its jobs, stop each slurmd and slurmctld by
# the PID it recorded, then end any process still inside the emulated nodes' network namespaces
# (found by namespace, never by name), and delete the namespaces, veths and the bridge.
# Idempotent. Leaves munge and the single-node Slurm alone.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

MN_STATE=${SLURM_MULTINODE_STATE:-/var/lib/slurm-multinode}
export SLURM_CONF=/etc/slurm-multinode/slurm.conf
BRIDGE=mnbr0
NAMESPACES=(mn-ctl mn-node1 mn-node2 mn-node3 mn-node4)
VETHS=(mnv-ctl mnv-node1 mnv-node2 mnv-node3 mnv-node4)

cancel_jobs_if_running "$MN_STATE/run/slurmctld.pid"
# In parallel: slurmd takes ~2 s to stop and slurmctld ~3 s.
for n in node1 node2 node3 node4; do
  stop_pidfile "$MN_STATE/run/slurmd.$n.pid" slurmd 10 &
done
stop_pidfile "$MN_STATE/run/slurmctld.pid" slurmctld 10 &
wait

# pids_in_ns NS: the PIDs of live processes whose network namespace is /run/netns/NS.
pids_in_ns() {
  local ns=$1 want link p
  want="net:[$(stat -L -c %i "/run/netns/$ns")]"
  for p in /proc/[0-9]*; do
    link=$(readlink "$p/ns/net" 2>/dev/null) || continue
    [[ $link == "$want" ]] && echo "${p#/proc/}"
  done
  return 0
}
for ns in "${NAMESPACES[@]}"; do
  [[ -e /run/netns/$ns ]] || continue
  pids=$(pids_in_ns "$ns")
  if [[ -n $pids ]]; then
    log "ending processes left in $ns: ${pids//$'\n'/ }"
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    end=$((SECONDS + 5))
    while [[ -n "$(pids_in_ns "$ns")" ]] && ((SECONDS < end)); do sleep 0.1; done
    pids=$(pids_in_ns "$ns")
    # shellcheck disable=SC2086
    [[ -z $pids ]] || { log "SIGKILL to $ns: ${pids//$'\n'/ }"; kill -KILL $pids 2>/dev/null || true; sleep 0.3; }
  fi
  ip netns del "$ns" 2>/dev/null || log "warning: could not delete namespace $ns"
done
for veth in "${VETHS[@]}"; do
  ip link del "$veth" 2>/dev/null || true
done
ip link del "$BRIDGE" 2>/dev/null || true
rm -f "$MN_STATE"/run/*.pid "$MN_STATE/run/confsum"
log "stopped"
