#!/usr/bin/env bash
# Start a 4-node Slurm emulated on this one machine, beside the single-node one (ci/start-slurm.sh).
#
# Each emulated node (node1..node4, 10.77.0.11-14) and the controller (mnctl, 10.77.0.10) get a
# network namespace joined by a veth pair to the bridge mnbr0 (10.77.0.1/24) in the root namespace,
# so sinfo/srun work from the host. Every daemon runs under
#   nsenter --net=/run/netns/NS unshare --uts --mount --propagation private
# with its own hostname, and a hosts file, an empty resolv.conf and a per-node PMIx directory
# bind-mounted. The Slurm instance is separate: SLURM_CONF=/etc/slurm-multinode/slurm.conf,
# ports 7817/7818, state/spool/log/pid under /var/lib/slurm-multinode. munge is the host's.
#
# Network: only 10.77.0.0/24 and loopback. The namespaces' default route points at 10.77.0.254,
# which nothing answers (it only silences Dask's "Couldn't detect a suitable IP address"), and the
# host does not forward (net.ipv4.ip_forward stays as it is; it is 0 here).
#
# Idempotent: when the network and all daemons are up with the current config, only checks.
# Otherwise it tears everything down (ci/stop-multinode-slurm.sh) and builds it again (~1 s).
# Needs munged running (ci/start-slurm.sh starts it). Prints the SLURM_CONF to use.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

MN_STATE=${SLURM_MULTINODE_STATE:-/var/lib/slurm-multinode}
MN_CONF_DIR=/etc/slurm-multinode
MN_CONF=$MN_CONF_DIR/slurm.conf
NET=10.77.0
BRIDGE=mnbr0
CTL_NS=mn-ctl CTL_HOST=mnctl CTL_IP=$NET.10
NODES=(node1 node2 node3 node4)
CPUS=4
node_ip() { echo "$NET.$((10 + ${1#node}))"; }   # node1 -> 10.77.0.11
ns_of() { echo "mn-$1"; }                          # node1 -> mn-node1
veth_of() { echo "mnv-$1"; }                       # host-side veth name

export SLURM_CONF=$MN_CONF
CTLD_LOG=$MN_STATE/log/slurmctld.log
node_log() { echo "$MN_STATE/log/slurmd.$1.log"; }
all_logs() { echo "$CTLD_LOG"; local n; for n in "${NODES[@]}"; do node_log "$n"; done; }

# ---------------------------------------------------------------- munge (the host's)
pid_alive /run/munge/munged.pid munged ||
  die "munged is not running; run ci/start-slurm.sh first (it starts munge for both Slurms)"
munge -n | unmunge >/dev/null 2>&1 || die "munge does not answer" /var/log/munge/munged.log

# ---------------------------------------------------------------- files
install -d -m 0755 "$MN_CONF_DIR" "$MN_STATE"/{state,spool,log,run,etc,pmix}
for n in "${NODES[@]}"; do install -d -m 0755 "$MN_STATE/nodes/$n/pmix"; done

hosts_text="127.0.0.1 localhost
::1 localhost
$NET.1 mnhost
$CTL_IP $CTL_HOST"
for n in "${NODES[@]}"; do hosts_text+=$'\n'"$(node_ip "$n") $n"; done
# write_if_changed FILE TEXT: the files below are bind-mounted into running nodes; leave them be.
write_if_changed() { [[ "$(cat "$1" 2>/dev/null)" == "$2" ]] || printf '%s\n' "$2" > "$1"; }
write_if_changed "$MN_STATE/etc/hosts" "$hosts_text"
# No nameserver: a lookup of an unknown name goes to 127.0.0.1 inside the namespace and fails fast.
write_if_changed "$MN_STATE/etc/resolv.conf" "# emulated nodes: names come from /etc/hosts only"

node_lines=""
for n in "${NODES[@]}"; do
  node_lines+="NodeName=$n NodeHostname=$n NodeAddr=$(node_ip "$n") CPUs=$CPUS RealMemory=$(node_memory_mb ${#NODES[@]}) State=UNKNOWN"$'\n'
done
CONF_TEXT="# Written by dask_runners ci/start-multinode-slurm.sh: 4 emulated nodes in network namespaces.
ClusterName=multinode
SlurmctldHost=$CTL_HOST($CTL_IP)
SlurmctldPort=7817
SlurmdPort=7818
$SLURM_CONTAINER_SETTINGS
StateSaveLocation=$MN_STATE/state
SlurmdSpoolDir=$MN_STATE/spool/%n
SlurmctldPidFile=$MN_STATE/run/slurmctld.pid
SlurmdPidFile=$MN_STATE/run/slurmd.%n.pid
SlurmctldLogFile=$CTLD_LOG
SlurmdLogFile=$MN_STATE/log/slurmd.%n.log
SlurmctldDebug=info
SlurmdDebug=info
KillWait=5
InactiveLimit=0
MinJobAge=60
${node_lines}PartitionName=mn Nodes=node[1-4] Default=YES MaxTime=INFINITE OverSubscribe=FORCE:4 State=UP"
# PMIx: all nodes share /tmp; each node bind-mounts its own directory over $MN_STATE/pmix.
MPI_TEXT="PMIxCliTmpDirBase=$MN_STATE/pmix"
if [[ "$(cat "$MN_CONF" 2>/dev/null)" != "$CONF_TEXT" ]]; then
  log "writing $MN_CONF"; printf '%s\n' "$CONF_TEXT" > "$MN_CONF"
fi
write_if_changed "$MN_CONF_DIR/mpi.conf" "$MPI_TEXT"
CONF_SUM=$(cat "$MN_CONF" "$MN_CONF_DIR/mpi.conf" "$MN_STATE/etc/hosts" | sha256sum | cut -d' ' -f1)

# ---------------------------------------------------------------- already up?
ns_has_ip() {  # ns_has_ip NS IP: the namespace exists, its eth0 is up with IP
  [[ -e /run/netns/$1 ]] && ip -n "$1" -4 -br addr show dev eth0 2>/dev/null | grep -q "UP.* $2/24"
}
everything_up() {
  ip -4 -br addr show dev "$BRIDGE" 2>/dev/null | grep -q " $NET.1/24" || return 1
  ns_has_ip "$CTL_NS" "$CTL_IP" || return 1
  pid_alive "$MN_STATE/run/slurmctld.pid" slurmctld || return 1
  [[ "$(cat "$MN_STATE/run/confsum" 2>/dev/null)" == "$CONF_SUM" ]] || return 1
  local n
  for n in "${NODES[@]}"; do
    ns_has_ip "$(ns_of "$n")" "$(node_ip "$n")" || return 1
    pid_alive "$MN_STATE/run/slurmd.$n.pid" slurmd || return 1
  done
}

t0=${EPOCHREALTIME/,/.}
if everything_up; then
  log "network and daemons already up"
else
  if [[ -e $MN_STATE/run/confsum || -e /run/netns/$CTL_NS ]] || ip link show "$BRIDGE" >/dev/null 2>&1; then
    log "partial or outdated multi-node setup found; tearing it down first"
    bash "$here/stop-multinode-slurm.sh"
  fi

  # -------------------------------------------------------------- network
  log "creating bridge $BRIDGE ($NET.1/24) and namespaces"
  ip link add "$BRIDGE" type bridge
  ip addr add "$NET.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  add_ns() {  # add_ns NS IP HOSTVETH
    local ns=$1 addr=$2 veth=$3
    ip netns add "$ns"
    ip link add "$veth" type veth peer name "$veth-p"
    ip link set "$veth-p" netns "$ns"
    ip link set "$veth" master "$BRIDGE"
    ip link set "$veth" up
    ip -n "$ns" link set lo up
    ip -n "$ns" link set "$veth-p" name eth0
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
    # Nothing answers at .254: this only gives Dask a route to pick an interface from.
    ip -n "$ns" route add default via "$NET.254" dev eth0
  }
  add_ns "$CTL_NS" "$CTL_IP" "$(veth_of ctl)"
  for n in "${NODES[@]}"; do add_ns "$(ns_of "$n")" "$(node_ip "$n")" "$(veth_of "$n")"; done

  # -------------------------------------------------------------- daemons
  # in_node NS HOST CMD...: run CMD in NS with its own hostname and mount namespace.
  # shellcheck disable=SC2016  # the inner script expands its own arguments
  in_node() {
    local ns=$1 host=$2; shift 2
    nsenter --net="/run/netns/$ns" unshare --uts --mount --propagation private \
      /bin/sh -ec 'host=$1 pmix=$2 state=$3; shift 3
        mount --bind "$state/etc/hosts" /etc/hosts
        mount --bind "$state/etc/resolv.conf" /etc/resolv.conf
        [ -z "$pmix" ] || mount --bind "$pmix" "$state/pmix"
        hostname "$host"
        exec "$@"' in_node "$host" "${PMIX_DIR:-}" "$MN_STATE" "$@"
  }
  rm -f "$MN_STATE"/run/*.pid
  log "starting slurmctld in $CTL_NS"
  PMIX_DIR="" in_node "$CTL_NS" "$CTL_HOST" /usr/sbin/slurmctld -f "$MN_CONF" ||
    die "slurmctld failed to start" "$CTLD_LOG"
  wait_for 15 "slurmctld to write its pid file" "$CTLD_LOG" -- pid_alive "$MN_STATE/run/slurmctld.pid" slurmctld
  wait_for 20 "slurmctld to answer on $CTL_IP:7817" "$CTLD_LOG" -- \
    bash -c 'scontrol ping 2>/dev/null | grep -q "is UP"'
  for n in "${NODES[@]}"; do
    install -d -m 0755 "$MN_STATE/spool/$n"
    PMIX_DIR="$MN_STATE/nodes/$n/pmix" in_node "$(ns_of "$n")" "$n" /usr/sbin/slurmd -f "$MN_CONF" -N "$n" ||
      die "slurmd on $n failed to start" "$(node_log "$n")"
  done
  for n in "${NODES[@]}"; do
    wait_for 15 "slurmd on $n to write its pid file" "$(node_log "$n")" -- pid_alive "$MN_STATE/run/slurmd.$n.pid" slurmd
  done
  echo "$CONF_SUM" > "$MN_STATE/run/confsum"
fi

# ---------------------------------------------------------------- nodes idle
end=$((SECONDS + 30))
while :; do
  states=$(sinfo -h -N -o '%N %t' 2>/dev/null | sort -u)
  ready=$(awk '$2 ~ /^(idle|mix|alloc|comp)/' <<<"$states" | wc -l)
  ((ready == ${#NODES[@]})) && break
  down=$(awk '$2 ~ /^(down|drain|drng|fail)/ {print $1}' <<<"$states" | paste -sd, -)
  if [[ -n $down ]]; then   # e.g. marked down in the saved state of an earlier run
    scontrol update nodename="$down" state=resume 2>/dev/null || true
  fi
  # shellcheck disable=SC2046
  ((SECONDS < end)) || die "nodes not ready after 30s: $(tr '\n' ';' <<<"$states")" $(all_logs)
  sleep 0.2
done
log "nodes: $(sinfo -h -N -o '%N=%t' | sort -u | paste -sd' ' -)"

# ---------------------------------------------------------------- smoke test
# shellcheck disable=SC2046
out=$(timeout 30 srun -N4 -n8 hostname 2>&1) || die "smoke test 'srun -N4 -n8 hostname' failed: $out" $(all_logs)
got=$(sort -u <<<"$out" | paste -sd' ' -)
[[ $got == "node1 node2 node3 node4" && $(grep -c . <<<"$out") == 8 ]] ||
  die "'srun -N4 -n8 hostname' printed: $out"
log "ok in $(awk -v a="$t0" -v b="${EPOCHREALTIME/,/.}" 'BEGIN{printf "%.1f", b-a}')s: srun -N4 -n8 hostname ran on $got"
echo "SLURM_CONF=$MN_CONF"
