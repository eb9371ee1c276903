# Shared helpers for the ci/ scripts. Source it; do not run it.
# shellcheck shell=bash disable=SC2034

CI_STATE=${SLURM_CI_STATE:-/var/lib/slurm-ci}   # state, spool, logs and pid files
SLURM_CONF_FILE=/etc/slurm/slurm.conf              # where Debian's Slurm looks
OLDEST_ENV=/opt/dask-runners-ci/oldest-env          # the lowest dask and distributed allowed (setup.sh, test.sh)

log() { echo "[$(basename "$0")] $*"; }

die() {  # die MESSAGE [LOGFILE...]: print the message and the tail of each log, then exit 1
  local msg=$1; shift
  echo "[$(basename "$0")] ERROR: $msg" >&2
  local f
  for f in "$@"; do
    [[ -f $f ]] || continue
    echo "----- last 30 lines of $f -----" >&2
    tail -n 30 "$f" >&2
  done
  exit 1
}

# pid_alive PIDFILE COMM: true when PIDFILE names a live process whose command is COMM.
# (The name check only guards against a reused PID; processes are never found or killed by name.)
pid_alive() {
  local pidfile=$1 comm=$2 pid
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # A killed daemon not yet reaped is a zombie: kill -0 still succeeds on it.
  [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]] || return 1
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm" ]]
}

# stop_pidfile PIDFILE COMM [DEADLINE_S]: SIGTERM the recorded PID, wait, then SIGKILL.
stop_pidfile() {
  local pidfile=$1 comm=$2 deadline=${3:-15} pid i
  if ! pid_alive "$pidfile" "$comm"; then
    rm -f "$pidfile"
    return 0
  fi
  pid=$(<"$pidfile")
  log "stopping $comm (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < deadline * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
    sleep 0.1
  done
  log "$comm (pid $pid) ignored SIGTERM for ${deadline}s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  sleep 0.5
  rm -f "$pidfile"
}

# wait_for DEADLINE_S DESCRIPTION LOGFILE -- COMMAND...: poll COMMAND every 0.2 s until it succeeds.
wait_for() {
  local deadline=$1 what=$2 logfile=$3; shift 4
  local end=$((SECONDS + deadline))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || die "timed out after ${deadline}s waiting for $what" "$logfile"
    sleep 0.2
  done
}

# node_memory_mb [SHARE]: the MiB a node of the test Slurm declares (RealMemory), so that jobs may
# ask for --mem and --mem-per-cpu: the machine's memory, less 512 MiB for the system, divided by SHARE
# (the emulated nodes of the multi-node Slurm share one machine). Memory is not a consumable
# resource here (CR_Core): a request sets SLURM_MEM_PER_NODE / SLURM_MEM_PER_CPU, nothing enforces it.
node_memory_mb() {
  local total_kb
  total_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
  echo $(( (total_kb / 1024 - 512) / ${1:-1} ))
}

# slurm.conf settings that work in a container without systemd or cgroup delegation
# (see shared/notes/real-launchers.md); both the single-node and the multi-node Slurm use them.
SLURM_CONTAINER_SETTINGS="SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmdParameters=config_overrides"

# cancel_jobs_if_running CTLD_PIDFILE: if that slurmctld runs, cancel every job of its cluster
# (SLURM_CONF picks the cluster) and wait up to 10 s for the queue to empty.
cancel_jobs_if_running() {
  pid_alive "$1" slurmctld || return 0
  local jobs end
  jobs=$(timeout 10 squeue -h -o %A 2>/dev/null || true)
  [[ -n $jobs ]] || return 0
  log "cancelling jobs: ${jobs//$'\n'/ }"
  # shellcheck disable=SC2086  # one argument per job id
  timeout 10 scancel $jobs || true
  end=$((SECONDS + 10))
  while [[ -n "$(timeout 5 squeue -h -o %A 2>/dev/null)" ]] && ((SECONDS < end)); do sleep 0.2; done
}
