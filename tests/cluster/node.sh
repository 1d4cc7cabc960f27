#!/bin/bash
# Act on one node of the running test cluster (see up.sh):
#
#   node.sh exec NODE CMD...     run CMD in NODE's namespaces (its hostname,
#                                network and /etc/hosts); NODE may be "head"
#   node.sh kill-slurmd NODE     SIGKILL NODE's slurmd (its job tasks live on)
#   node.sh start-slurmd NODE    start NODE's slurmd again
#   node.sh pids NODE            pids of every process in NODE's namespaces
#
# Honours CLUSTER_DIR like up.sh. Does not take the cluster lock: it is meant
# for tests that are using the cluster.
set -euo pipefail
. "$(dirname "$0")/common.sh"
need_root
close_inherited_fds
[ $# -ge 2 ] || die "usage: node.sh exec|kill-slurmd|start-slurmd|pids NODE [CMD...]"
cmd=$1 node=$2
shift 2
anchor_pid "$node" >/dev/null || die "node $node is not up (CLUSTER_DIR=$S)"

slurmd_pid() {
	local p
	p=$(cat "$S/run/slurmd-$node.pid" 2>/dev/null) || return 1
	# the recorded pid is NODE's slurmd only if it still runs in NODE's namespace
	[ "$(stat -L -c %i "/proc/$p/ns/net" 2>/dev/null)" = "$(cat "$S/run/$node.netns")" ] &&
		[ "$(cat "/proc/$p/comm" 2>/dev/null)" = slurmd ] && echo "$p"
}

case $cmd in
exec)
	[ $# -ge 1 ] || die "exec needs a command"
	# exec: the caller's pid becomes CMD's (nsenter itself execs too)
	exec nsenter -t "$(anchor_pid "$node")" -n -u -m -- "$@"
	;;
kill-slurmd)
	p=$(slurmd_pid) || die "no slurmd running on $node"
	kill -KILL "$p"
	until ended "$p"; do sleep 0.02; done
	;;
start-slurmd)
	! slurmd_pid >/dev/null || die "slurmd already runs on $node"
	start_slurmd "$node"
	;;
pids)
	pids_in_netns "$S" "$node"
	;;
*) die "unknown command $cmd" ;;
esac
