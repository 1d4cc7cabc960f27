# Shared settings and helpers of up.sh, down.sh and node.sh (sourced, not run).
#
# Settings (environment):
#   NODES           compute nodes node1..nodeN (default 3)
#   CLUSTER_DIR     config, logs, spool and state (default /tmp/snapc-cluster)
#   CLUSTER_CPUS    CPUs each node advertises (default 4; all share the real cores)
#   CLUSTER_SUBNET  first three octets of the private /24 (default 10.199.16)
#   SLURMD_TIMEOUT  seconds before slurmctld declares a silent node DOWN (default 6)
#
# The bridge and the lock are machine-wide: one cluster at a time per machine.

CLUSTER_DIR=${CLUSTER_DIR:-/tmp/snapc-cluster}
NODES=${NODES:-3}
CLUSTER_CPUS=${CLUSTER_CPUS:-4}
CLUSTER_SUBNET=${CLUSTER_SUBNET:-10.199.16}
SLURMD_TIMEOUT=${SLURMD_TIMEOUT:-6}
BRIDGE=snapc-br0
# /run is root's alone (unlike /tmp or /run/lock), so nobody can plant these.
LOCK=/run/snapc-test-cluster.lock
CURRENT=/run/snapc-test-cluster.dir
S=$CLUSTER_DIR
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { printf '[%s %s] %s\n' "$(basename "$0" .sh)" "$(date +%T.%3N)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Daemons must not inherit the caller's descriptors: a lock or a pipe they
# kept open would outlive the caller (a held lock, a reader never seeing EOF).
# 255 is the one bash reads this script from.
close_inherited_fds() {
	local fd
	for fd in "/proc/$$/fd"/*; do
		fd=${fd##*/}
		case $fd in 0 | 1 | 2 | 255) ;; *) eval "exec $fd>&-" 2>/dev/null ;; esac
	done
}

need_root() { [ "$(id -u)" = 0 ] || die "needs root (network, UTS and mount namespaces)"; }

# Take the machine-wide cluster lock for the rest of this script, unless the
# caller (the Rust fixture) already holds it for its whole lifetime. flock -o
# keeps the lock in the flock process only, so the daemons we start never
# inherit it and a crashed caller releases it.
with_lock() {
	local rc
	[ "${SNAPC_CLUSTER_LOCK_HELD:-}" = 1 ] && return 0
	SNAPC_CLUSTER_LOCK_HELD=1 flock -n -o -E 75 "$LOCK" "$0" "$@"
	rc=$?
	[ $rc = 75 ] && log "the test cluster is in use: $LOCK is held (by a running test?)"
	exit $rc
}

# Node and netns names of a cluster dir, from what up.sh recorded there.
recorded_names() {
	local f
	for f in "$1"/run/*.netns; do
		[ -e "$f" ] && basename "$f" .netns
	done
	return 0
}

# pids whose network namespace is one of those recorded in dir $1 for the
# names that follow (one ps for all: this runs in a loop while killing).
pids_in_netns() {
	local d=$1 n inodes=""
	shift
	for n in "$@"; do
		inodes="$inodes $(cat "$d/run/$n.netns" 2>/dev/null)"
	done
	[ -n "${inodes// /}" ] || return 0
	ps -e -o pid=,netns= | awk -v want="$inodes" '
		BEGIN { split(want, w, " "); for (i in w) ns[w[i]] = 1 }
		($2 in ns) { print $1 }'
}

# The anchor of NAME: the process whose namespaces are that node's, alive and
# still ours (checked by its recorded network namespace).
anchor_pid() {
	local p
	p=$(cat "$S/run/$1.anchor" 2>/dev/null) || return 1
	[ -n "$p" ] && [ "$(stat -L -c %i "/proc/$p/ns/net" 2>/dev/null)" = "$(cat "$S/run/$1.netns" 2>/dev/null)" ] &&
		echo "$p"
}

# Run a command in NAME's network, UTS and mount namespaces (daemons are
# started through it with CLEAN_ENV).
in_node() {
	local name=$1 p
	shift
	p=$(anchor_pid "$name") || die "node $name is not up (no anchor in $S/run)"
	nsenter -t "$p" -n -u -m -- "$@"
}

# True once pid $1 has ended. A killed daemon's parent is init, which may
# take a while to reap it, so a zombie counts as ended.
ended() {
	local st
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
	[ -z "$st" ] || [ "$st" = Z ] || [ "$st" = X ]
}

# The environment daemons start with: nothing of the caller's (a stray
# SLURM_CONF would point them at another cluster).
CLEAN_ENV=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8)

# (Re)start NAME's slurmd inside its namespaces. setsid -f: a session of its
# own, so a signal to the caller's process group (Ctrl-C on a test) does not
# reach it.
start_slurmd() {
	mkdir -p "$S/spool/$1/tmp"
	in_node "$1" "${CLEAN_ENV[@]}" setsid -f /usr/sbin/slurmd -D -N "$1" \
		</dev/null >>"$S/log/$1.console" 2>&1
}
