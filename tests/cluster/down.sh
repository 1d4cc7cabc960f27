#!/bin/bash
# Remove the test cluster: every process in its node namespaces (slurmctld,
# slurmd, slurmstepd, job tasks, the namespace anchors), its munged, the veths
# and the bridge. The namespaces go with their last process, and their bind
# mounts with them. Idempotent; also cleans up after an up.sh that failed
# halfway or a caller that crashed. Logs stay in $CLUSTER_DIR/log.
#
# Kills only processes inside namespaces this script family recorded, and the
# munged whose pid it recorded (checked by its command line): never by name.
set -uo pipefail
. "$(dirname "$0")/common.sh"
need_root
with_lock "$@"

down_dir() {
	local d=$1 names n p pids i
	[ -d "$d/run" ] || return 0
	rm -f "$d/run/up.done"
	names=$(recorded_names "$d")
	# Host ends of the veths first: deleting one removes its pair at once,
	# whereas a dying namespace frees its end later, in the background.
	for n in $names; do
		ip link del "sc-$n" 2>/dev/null
	done
	# SIGKILL straight away: nothing here has state worth saving (up.sh
	# starts from empty state), and it makes down take a fraction of a second.
	for i in $(seq 100); do
		# shellcheck disable=SC2086
		pids=$(pids_in_netns "$d" $names)
		[ -z "$pids" ] && break
		# shellcheck disable=SC2086
		kill -KILL $pids 2>/dev/null
		sleep 0.05
	done
	if [ -n "$pids" ]; then
		log "processes still in the cluster's namespaces: $pids"
		return 1
	fi
	rm -f "$d"/run/*.netns "$d"/run/*.anchor "$d"/run/slurm*.pid
	# Slurm clients in the root namespace still talking to this cluster
	# (an srun whose caller was killed would wait forever): a Slurm command
	# whose environment names this cluster's slurm.conf.
	for p in $(for c in srun salloc sbatch sattach scontrol squeue sinfo scancel; do pgrep -x "$c"; done); do
		tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qxF "SLURM_CONF=$d/etc/slurm/slurm.conf" &&
			kill -KILL "$p" 2>/dev/null
	done
	p=$(cat "$d/run/munged.pid" 2>/dev/null)
	if [ -n "$p" ] && tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "--socket=$d/run/munge.socket"; then
		kill -KILL "$p" 2>/dev/null
		until ended "$p"; do sleep 0.02; done
	fi
	rm -f "$d/run/munged.pid" "$d/run/munge.socket" "$d/run/munge.socket.lock"
	return 0
}

rc=0
dirs=$S
cur=$(cat "$CURRENT" 2>/dev/null)
[ -n "$cur" ] && [ "$cur" != "$S" ] && dirs="$dirs $cur"
for d in $dirs; do down_dir "$d" || rc=1; done

# Anything still on the bridge (an up.sh stopped between veth and record).
for v in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
	ip link del "$v" 2>/dev/null
done
ip link del "$BRIDGE" 2>/dev/null
[ $rc = 0 ] && rm -f "$CURRENT"
exit $rc
