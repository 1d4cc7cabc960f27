#!/bin/bash
# Bring up a real Slurm cluster on this one machine, for snapc's multi-node
# tests: slurmctld on "head", one slurmd on each of node1..nodeN, every one in
# a network, UTS (hostname) and mount namespace of its own on a private
# bridge; one munged in the root namespace; client commands (srun, sbatch,
# squeue, ...) from the root namespace with $CLUSTER_DIR/env.sh sourced.
#
#   NODES=3 CLUSTER_DIR=/tmp/snapc-cluster tests/cluster/up.sh [--fresh]
#
# Idempotent: a healthy cluster with the same settings is left as it is
# ("already up") unless --fresh is given; anything else is removed with
# down.sh and built again from empty state. Settings: see common.sh.
# Needs root, and: slurmctld slurmd slurm-client munge (Debian), plus
# libpmix-dev openmpi-bin libopenmpi-dev for `srun --mpi=pmix`.
set -euo pipefail
. "$(dirname "$0")/common.sh"
need_root
close_inherited_fds
with_lock "$@"
fresh=0
[ "${1:-}" = --fresh ] && fresh=1

for b in slurmctld slurmd munged; do
	[ -x "/usr/sbin/$b" ] || die "/usr/sbin/$b missing (apt-get install slurmctld slurmd slurm-client munge)"
done
for b in srun sinfo nsenter unshare setsid ip flock; do
	command -v "$b" >/dev/null || die "$b missing"
done
case $NODES in '' | *[!0-9]*) die "NODES must be a number, not '$NODES'" ;; esac
if [ "$NODES" -lt 1 ] || [ "$NODES" -gt 200 ]; then die "NODES must be 1..200"; fi
case $S in /?*) ;; *) die "CLUSTER_DIR must be an absolute path below /" ;; esac
[[ $CLUSTER_SUBNET =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "CLUSTER_SUBNET must be three octets, like 10.199.16"

NODE_NAMES=$(seq -f 'node%g' 1 "$NODES")
NAMES="head $NODE_NAMES"
SETTINGS="$(cat "$HERE"/up.sh "$HERE"/common.sh | md5sum | cut -c1-16) $NODES $CLUSTER_CPUS $CLUSTER_SUBNET $SLURMD_TIMEOUT"
export SLURM_CONF=$S/etc/slurm/slurm.conf

healthy() {
	local n
	[ "$(cat "$S/run/up.done" 2>/dev/null)" = "$SETTINGS" ] || return 1
	for n in $NAMES; do anchor_pid "$n" >/dev/null || return 1; done
	[ "$(timeout 10 sinfo -h -N -o %T 2>/dev/null | grep -cE '^(idle|mixed|allocated|completing)$')" = "$NODES" ]
}
if [ $fresh = 0 ] && healthy; then
	log "already up ($NODES nodes, $S)"
	exit 0
fi
# The cluster dir: ours alone. Refuse one someone else could have prepared,
# and never clear a directory that is not a cluster dir (CLUSTER_DIR=/usr).
if [ -e "$S" ] || [ -L "$S" ]; then
	if [ -L "$S" ] || [ ! -d "$S" ] || [ "$(stat -c %u "$S")" != 0 ]; then
		die "$S exists and is not a directory owned by root"
	fi
	if [ ! -e "$S/.snapc-test-cluster" ] && [ -n "$(ls -A "$S")" ]; then
		die "$S is not empty and not a test cluster dir"
	fi
fi
"$HERE/down.sh" || die "could not remove the previous cluster"
T0=$(date +%s%N)

mkdir -p "$S"
chmod 0700 "$S"
touch "$S/.snapc-test-cluster"
rm -rf "${S:?}/run" "${S:?}/log" "${S:?}/spool" "${S:?}/ctld" "${S:?}/etc"
mkdir -p "$S"/{etc/slurm,run,log,spool,ctld,munge,work}
echo "$S" >"$CURRENT"

# ---- generated configuration ----
hostname_root=$(hostname)
case " $NAMES " in *" $hostname_root "*) die "this machine's hostname '$hostname_root' is a cluster node name" ;; esac
addr() { # name -> address
	case $1 in
	head) echo "$CLUSTER_SUBNET.1" ;;
	node*) echo "$CLUSTER_SUBNET.$((10 + ${1#node}))" ;;
	esac
}
{
	echo "127.0.0.1 localhost"
	for n in $NAMES; do echo "$(addr "$n") $n"; done
	# the root namespace, where srun/salloc/sbatch run and submit from
	echo "$CLUSTER_SUBNET.254 $hostname_root"
} >"$S/etc/hosts"

cat >"$SLURM_CONF" <<EOF
# Written by snapc's tests/cluster/up.sh; rewritten on every fresh start.
ClusterName=snapctest
SlurmctldHost=head($(addr head))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# munged runs once, in the root namespace; a path socket is reachable from all.
# cred_expire also sets how long a requeued job waits before it may start
# again (default 120 s); short so requeue tests take seconds.
AuthInfo=socket=$S/run/munge.socket,cred_expire=10
StateSaveLocation=$S/ctld
# The nodes share one file system: whatever is per node carries %n.
SlurmdSpoolDir=$S/spool/%n
# mpi/pmix puts its spmix_appdir_* under TmpFS; shared, parallel steps collide.
TmpFS=$S/spool/%n/tmp
SlurmctldPidFile=$S/run/slurmctld.pid
SlurmdPidFile=$S/run/slurmd-%n.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroup plugins: every node shares the machine's cgroups, and task/affinity
# would pin all nodes' tasks to the same real cores.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
# Pending jobs (a requeued one whose wait is over) are looked at every 2 s,
# not every 60 s.
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Take the CPUs below as given, not what the hardware shows.
SlurmdParameters=config_overrides
# A node that was DOWN serves again as soon as its slurmd registers.
ReturnToService=2
# A batch job on a failed node ends NODE_FAIL unless it asked for --requeue.
JobRequeue=0
# Short, so node-failure tests take seconds: slurmctld pings every third of it.
SlurmdTimeout=$SLURMD_TIMEOUT
MessageTimeout=5
KillWait=3
InactiveLimit=0
NodeName=DEFAULT CPUs=$CLUSTER_CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$CLUSTER_CPUS ThreadsPerCore=1 RealMemory=1024 State=UNKNOWN
$(for n in $NODE_NAMES; do echo "NodeName=$n NodeAddr=$(addr "$n") NodeHostname=$n"; done)
PartitionName=debug Nodes=node[1-$NODES] Default=YES MaxTime=INFINITE State=UP
EOF

# ---- munged: one key, one daemon, in the root namespace ----
if [ ! -s "$S/munge/munge.key" ]; then
	(umask 077 && head -c 1024 /dev/urandom >"$S/munge/munge.key")
fi
chmod 0700 "$S/munge"
chmod 0400 "$S/munge/munge.key"
"${CLEAN_ENV[@]}" setsid -f /usr/sbin/munged -F --force --num-threads=2 \
	--key-file="$S/munge/munge.key" --socket="$S/run/munge.socket" \
	--pid-file="$S/run/munged.pid" --log-file="$S/log/munged.log" \
	--seed-file="$S/munge/munged.seed" </dev/null >>"$S/log/munged.log" 2>&1

# ---- one anchor per node: owns the namespaces, sets hostname and mounts ----
# Not `ip netns add` + `ip netns exec`: exec remounts /sys, hiding
# /sys/fs/cgroup, and slurmd 22.05 then refuses to start. Namespaces anchored
# by a process need no /run/netns mounts and vanish with their processes.
[ -d /etc/slurm ] || mkdir -p /etc/slurm
for n in $NAMES; do
	"${CLEAN_ENV[@]}" setsid -f unshare --net --uts --mount --propagation private -- \
		/bin/bash -c '
			set -e
			S=$1 n=$2
			stat -L -c %i /proc/$$/ns/net >"$S/run/$n.netns"
			hostname "$n"
			mount --bind "$S/etc/hosts" /etc/hosts
			mount --bind "$S/etc/slurm" /etc/slurm
			ip link set lo up
			echo $$ >"$S/run/$n.anchor.new"
			mv "$S/run/$n.anchor.new" "$S/run/$n.anchor"
			exec sleep infinity' anchor "$S" "$n" </dev/null >>"$S/log/$n.console" 2>&1
done

ip link add "$BRIDGE" type bridge
ip addr add "$CLUSTER_SUBNET.254/24" dev "$BRIDGE"
ip link set "$BRIDGE" up

wait_for() { # what deadline_s test...
	local what=$1 tries=$(($2 * 20))
	shift 2
	while ! "$@"; do
		tries=$((tries - 1))
		[ $tries -gt 0 ] || die "timed out waiting for $what (logs: $S/log)"
		sleep 0.05
	done
}
anchors_ready() {
	local n
	for n in $NAMES; do [ -s "$S/run/$n.anchor" ] || return 1; done
}
wait_for "the node namespaces" 20 anchors_ready

# ---- network: a veth per node, host end on the bridge; no default route ----
for n in $NAMES; do
	p=$(anchor_pid "$n") || die "anchor of $n vanished (see $S/log/$n.console)"
	ip link add "sc-$n" type veth peer name eth0 netns "$p"
	ip link set "sc-$n" master "$BRIDGE" up
	nsenter -t "$p" -n ip addr add "$(addr "$n")/24" dev eth0
	nsenter -t "$p" -n ip link set eth0 up
done

wait_for "munged" 10 test -S "$S/run/munge.socket"

# ---- daemons ----
in_node head "${CLEAN_ENV[@]}" setsid -f /usr/sbin/slurmctld -D -i \
	</dev/null >>"$S/log/head.console" 2>&1
for n in $NODE_NAMES; do start_slurmd "$n"; done

all_idle() {
	[ "$(sinfo -h -N -o %T 2>/dev/null | grep -c '^idle$')" = "$NODES" ]
}
wait_for "$NODES idle nodes" 60 all_idle

# ---- for the caller: environment of the root namespace ----
cat >"$S/env.sh" <<EOF
# Written by up.sh. Source it to use the cluster from the root namespace.
export SLURM_CONF=$SLURM_CONF
export SNAPC_CLUSTER_DIR=$S
export SNAPC_CLUSTER_NODES="$(echo "$NODE_NAMES" | tr '\n' ' ' | sed 's/ $//')"
# on NODE CMD...: run CMD inside NODE's namespaces (node1.., or head)
on() { CLUSTER_DIR=$S "$HERE/node.sh" exec "\$@"; }
EOF
echo "$SETTINGS" >"$S/run/up.done"
log "up: $NODES nodes in $((($(date +%s%N) - T0) / 1000000)) ms ($S)"
