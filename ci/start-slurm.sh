#!/usr/bin/env bash
# Start munge and a single-node Slurm (slurmctld + slurmd) on this host, without systemd.
# Idempotent: daemons already running with the current config are left alone.
# Env: SLURM_CI_CPUS (default 32, may exceed real cores), SLURM_CI_STATE (default /var/lib/slurm-ci).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

CPUS=${SLURM_CI_CPUS:-32}
NODE=$(hostname -s)
# Slurm must resolve the node name; fall back to loopback if the host name does not resolve.
ADDR=$(getent hosts "$NODE" | awk '{print $1; exit}' || true)
[[ -n $ADDR ]] || ADDR=127.0.0.1

# ---------------------------------------------------------------- munge
MUNGE_KEY=/etc/munge/munge.key MUNGE_PID=/run/munge/munged.pid MUNGE_LOG=/var/log/munge/munged.log
install -d -o munge -g munge -m 0755 /run/munge /var/log/munge /var/lib/munge
install -d -o munge -g munge -m 0700 /etc/munge
if [[ $(stat -c %s "$MUNGE_KEY" 2>/dev/null || echo 0) != 1024 ]]; then
  log "creating a 1024-byte munge key"
  head -c 1024 /dev/urandom > "$MUNGE_KEY.tmp" && mv -f "$MUNGE_KEY.tmp" "$MUNGE_KEY"
  stop_pidfile "$MUNGE_PID" munged   # a running munged holds the old key
fi
chown munge:munge "$MUNGE_KEY" && chmod 0400 "$MUNGE_KEY"
if ! pid_alive "$MUNGE_PID" munged; then
  log "starting munged"
  rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
  runuser -u munge -- /usr/sbin/munged || die "munged failed to start" "$MUNGE_LOG"
fi
wait_for 10 "munge to answer" "$MUNGE_LOG" -- bash -c 'munge -n | unmunge'

# ---------------------------------------------------------------- slurm.conf
install -d -m 0755 "$CI_STATE"/{state,spool,log,run} /etc/slurm
CONF_TEXT="# Written by dask_runners ci/start-slurm.sh: single-node Slurm for tests, no systemd/cgroups.
ClusterName=ci
SlurmctldHost=$NODE($ADDR)
$SLURM_CONTAINER_SETTINGS
StateSaveLocation=$CI_STATE/state
SlurmdSpoolDir=$CI_STATE/spool
SlurmctldPidFile=$CI_STATE/run/slurmctld.pid
SlurmdPidFile=$CI_STATE/run/slurmd.pid
SlurmctldLogFile=$CI_STATE/log/slurmctld.log
SlurmdLogFile=$CI_STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
KillWait=5
InactiveLimit=0
MinJobAge=60
NodeName=$NODE NodeAddr=$ADDR CPUs=$CPUS RealMemory=$(node_memory_mb) State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE OverSubscribe=FORCE:4 State=UP"
if [[ "$(cat "$SLURM_CONF_FILE" 2>/dev/null)" != "$CONF_TEXT" ]]; then
  log "writing $SLURM_CONF_FILE"
  printf '%s\n' "$CONF_TEXT" > "$SLURM_CONF_FILE"
fi
CONF_SUM=$(sha256sum "$SLURM_CONF_FILE" | cut -d' ' -f1)

# ---------------------------------------------------------------- daemons
# start_daemon NAME: (re)start slurmctld or slurmd unless it is alive with the current config.
start_daemon() {
  local name=$1 pidfile=$CI_STATE/run/$1.pid sumfile=$CI_STATE/run/$1.confsum logfile=$CI_STATE/log/$1.log
  if pid_alive "$pidfile" "$name"; then
    [[ "$(cat "$sumfile" 2>/dev/null)" == "$CONF_SUM" ]] && return 0
    log "$name runs with an older slurm.conf; restarting it"
    stop_pidfile "$pidfile" "$name"
  fi
  log "starting $name"
  rm -f "$pidfile"
  "/usr/sbin/$name" || die "$name failed to start" "$logfile"
  wait_for 15 "$name to write its pid file" "$logfile" -- pid_alive "$pidfile" "$name"
  echo "$CONF_SUM" > "$sumfile"
}
ctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }

start_daemon slurmctld
wait_for 30 "slurmctld to answer" "$CI_STATE/log/slurmctld.log" -- ctld_up
start_daemon slurmd

node_state() { sinfo -h -n "$NODE" -o %t 2>/dev/null | head -n1; }
end=$((SECONDS + 30))
while :; do
  state=$(node_state)
  case $state in
    idle|mix|alloc|comp) break ;;
    down*|drain*|drng*|fail*)   # e.g. a node marked down in saved state from an earlier run
      log "node $NODE is '$state'; resuming it"
      scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
  esac
  ((SECONDS < end)) || die "node $NODE not ready after 30s (state '$state')" \
    "$CI_STATE/log/slurmctld.log" "$CI_STATE/log/slurmd.log"
  sleep 0.2
done
log "node $NODE is $state"

# ---------------------------------------------------------------- smoke test
out=$(timeout 30 srun -n2 hostname 2>&1) || die "smoke test 'srun -n2 hostname' failed: $out" \
  "$CI_STATE/log/slurmctld.log" "$CI_STATE/log/slurmd.log"
[[ $(grep -c . <<<"$out") == 2 ]] || die "'srun -n2 hostname' printed: $out"
mpis=$(srun --mpi=list 2>&1 | tr -s ' \n' ' ')
log "ok: srun -n2 hostname ran; srun --mpi=list:$mpis"
