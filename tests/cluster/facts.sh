#!/bin/bash
# Establishes, on the real test cluster, the Slurm behaviour snapc's
# multi-node runtime relies on, and measures its times. Each fact prints what
# was seen and "ok" or "UNEXPECTED"; the summary is "N passed, N failed".
# README.md in this directory records the results. Takes about two minutes
# (the signal-before-time-limit fact alone waits up to 90 s).
#
#   tests/cluster/facts.sh          (brings up a fresh 4-node cluster, and
#                                    takes it down at the end)
set -uo pipefail
. "$(dirname "$0")/common.sh"
need_root
# The whole run holds the cluster lock: up.sh and down.sh inside it do not
# take it again, and no test can take the cluster away meanwhile.
with_lock "$@"
export NODES=4
"$HERE/up.sh" --fresh || exit 1
trap '"$HERE/down.sh"' EXIT
. "$S/env.sh"
W=$S/work/facts
rm -rf "$W"
mkdir -p "$W"
cd "$W" || exit 1
mpicc -O2 -o mpi_hello "$HERE/mpi_hello.c" || die "mpicc failed"

pass=0 fail=0
check() { # description, then a test command
	local what=$1
	shift
	if "$@"; then
		echo "  ok: $what"
		pass=$((pass + 1))
	else
		echo "  UNEXPECTED: $what"
		fail=$((fail + 1))
	fi
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
state() { scontrol show job -o "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
nodes_of() { squeue -h -j "$1" -o %N 2>/dev/null; }
wait_running() { # job [seconds]
	local i
	for i in $(seq $((${2:-30} * 10))); do
		[ "$(state "$1")" = RUNNING ] && return 0
		sleep 0.1
	done
	return 1
}
wait_exists() { # file [seconds]
	local i
	for i in $(seq $((${2:-30} * 10))); do
		[ -e "$1" ] && return 0
		sleep 0.1
	done
	return 1
}
wait_file() { # file pattern [count [seconds]]: until COUNT lines match
	local i n
	for i in $(seq $((${4:-30} * 10))); do
		n=$(grep -c -- "$2" "$1" 2>/dev/null)
		[ "${n:-0}" -ge "${3:-1}" ] && return 0
		sleep 0.1
	done
	return 1
}

# Started first: Slurm checks time limits only every 30 s, so this one needs
# the longest; its result is read at the end.
cat >timelimit.sh <<'EOF'
#!/bin/bash
t0=$(date +%s%N)
trap 'echo "USR1 after $((($(date +%s%N) - t0) / 1000000)) ms"' USR1
while :; do sleep 0.2 & wait $!; done
EOF
tl_job=$(sbatch --parsable -N1 -w node4 -t 1 --signal=B:USR1@30 -o timelimit.out timelimit.sh)

echo "== 1. node names seen by tasks"
out=$(srun -N4 -n4 bash -c 'echo "$(hostname) $SLURMD_NODENAME $SLURM_NODEID $SLURM_TOPOLOGY_ADDR ${SLURM_LAUNCH_NODE_IPADDR:-} ${SLURM_SUBMIT_HOST:-}"' | sort)
echo "$out" | sed 's/^/  /'
check "hostname = SLURMD_NODENAME = node<SLURM_NODEID+1> in every task" \
	test "$(echo "$out" | awk '$1==$2 && $1=="node"($3+1) && $4==$1' | wc -l)" = 4
check "SLURM_LAUNCH_NODE_IPADDR is the root namespace ($CLUSTER_SUBNET.254)" \
	test "$(echo "$out" | awk -v a="$CLUSTER_SUBNET.254" '$5==a' | wc -l)" = 4
cat >names.sh <<'EOF'
#!/bin/bash
echo "batch $(hostname) ${SLURMD_NODENAME:-} launch=${SLURM_LAUNCH_NODE_IPADDR:-unset} submit=$SLURM_SUBMIT_HOST nodelist=$SLURM_JOB_NODELIST"
srun bash -c 'echo step $(hostname) launch=$SLURM_LAUNCH_NODE_IPADDR'
EOF
jid=$(sbatch --parsable -N3 -o names.out names.sh)
wait_file names.out '^step' 3
sed 's/^/  /' names.out
check "the batch shell runs on the first node, SLURM_LAUNCH_NODE_IPADDR unset there" \
	grep -q '^batch node1 node1 launch=unset' names.out
check "a step started from the batch shell has SLURM_LAUNCH_NODE_IPADDR = node1's address" \
	test "$(grep -c "launch=$CLUSTER_SUBNET.11\$" names.out)" = 3

echo "== 2. TCP between nodes inside a job, and to the root namespace"
cat >tcp.py <<'EOF'
import os, socket, sys, time
job, rank = os.environ["SLURM_JOB_ID"], int(os.environ["SLURM_PROCID"])
me = socket.gethostname()
rendezvous = f"tcp-{job}.addr"
if rank == 0:
    s = socket.socket()
    s.bind(("", 0))        # every address of this node, an ephemeral port
    s.listen()
    with open(rendezvous + ".tmp", "w") as f:
        f.write(f"{me} {s.getsockname()[1]}")
    os.rename(rendezvous + ".tmp", rendezvous)
    s.settimeout(30)
    for _ in range(int(os.environ["SLURM_NTASKS"]) - 1):
        c, peer = s.accept()
        print(f"{me} accepted {c.recv(64).decode()} from {peer[0]}", flush=True)
        c.close()
else:
    while not os.path.exists(rendezvous):
        time.sleep(0.05)
    host, port = open(rendezvous).read().split()
    c = socket.create_connection((host, int(port)), timeout=10)
    c.sendall(me.encode())
    c.close()
EOF
out=$(timeout 60 srun -N4 -n4 python3 tcp.py 2>&1)
echo "$out" | sed 's/^/  /'
check "tasks on node2..4 reach node1 by its name on an ephemeral port; peers seen at 10.x.(10+N)" \
	test "$(echo "$out" | grep -cE "^node1 accepted node([2-4]) from $CLUSTER_SUBNET\.1[2-4]\$")" = 3
python3 - "$W/root-listener.addr" <<'EOF' &
import socket, sys
s = socket.socket(); s.bind(("", 0)); s.listen(); s.settimeout(30)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
c, peer = s.accept()
print(f"  root namespace accepted {c.recv(64).decode()} from {peer[0]}", flush=True)
EOF
listener=$!
wait_file "$W/root-listener.addr" . 1 10
port=$(cat "$W/root-listener.addr")
out=$(srun -N1 -w node2 bash -c "echo -n \$(hostname) >/dev/tcp/\$SLURM_SUBMIT_HOST/$port && echo sent to \$SLURM_SUBMIT_HOST" 2>&1)
wait "$listener"
echo "  $out"
check "a task reaches a listener in the root namespace by \$SLURM_SUBMIT_HOST" \
	test "$out" = "sent to $(hostname)"

echo "== 3. one agent per node (--overlap) beside the ranks' srun --mpi=pmix, in one allocation"
for combo in "y y" "y n" "n y" "n n"; do
	# shellcheck disable=SC2086
	set -- $combo
	a="" r=""
	[ "$1" = y ] && a=--overlap
	[ "$2" = y ] && r=--overlap
	out=$(timeout 60 salloc -Q -N3 --ntasks-per-node=2 bash -c "
		srun -N3 -n3 --ntasks-per-node=1 $a bash -c 'echo agent \$(hostname); sleep 30' >agents.out 2>&1 &
		for i in \$(seq 100); do [ \$(grep -c agent agents.out) = 3 ] && break; sleep 0.1; done
		t=\$(date +%s%N)
		timeout 10 srun -N3 --ntasks-per-node=2 --mpi=pmix $r ./mpi_hello 2>mpi-$1$2.err | grep -c 'sum 15\$'
		echo \$(( (\$(date +%s%N) - t) / 1000000 ))
		kill %1; wait" 2>/dev/null)
	ranks=$(echo "$out" | sed -n 1p) ms=$(echo "$out" | sed -n 2p)
	echo "  agents [${a:-no --overlap}] + ranks [${r:-no --overlap}]: $ranks of 6 ranks ran, ${ms} ms"
	if [ -n "$a$r" ]; then
		check "ranks start beside the running agents" test "$ranks" = 6 ||
			sed 's/^/    /' "mpi-$1$2.err"
	else
		check "without --overlap on either step the ranks' step waits for the agents' step" test "$ranks" = 0
	fi
done
out=$(timeout 60 salloc -Q -N3 --ntasks-per-node=2 srun -N3 --ntasks-per-node=1 hostname 2>/dev/null | grep -c node)
check "inside a 2-per-node allocation, srun -N3 --ntasks-per-node=1 without -n3 still starts 6 tasks (SLURM_NTASKS wins)" \
	test "$out" = 6

echo "== 4. signals: scancel -b --signal, scancel --signal, sbatch --signal=B:...@T"
cat >sig.sh <<'EOF'
#!/bin/bash
trap 'echo "batch shell got USR1 at $(date +%s%N)"' USR1
python3 -c '
import signal, time
signal.signal(signal.SIGUSR1, lambda *a: print("foreground child got USR1", flush=True))
print("child ready", flush=True)
time.sleep(4)'
echo "foreground child ended at $(date +%s%N)"
srun -N3 -n3 bash -c 'trap "echo task \$SLURM_PROCID got USR1" USR1; echo task ready; sleep 6 & wait; sleep 2 & wait' &
while :; do sleep 0.2 & wait $!; done
EOF
jid=$(sbatch --parsable -N3 -o sig.out sig.sh)
wait_file sig.out "child ready"
sent=$(date +%s%N)
scancel -b --signal=USR1 "$jid"
wait_file sig.out "task ready" 3
sleep 1
scancel --signal=USR1 "$jid"
sleep 1
sent2=$(date +%s%N)
scancel -b --signal=USR1 "$jid"
wait_file sig.out "batch shell got USR1 at" 2 10
sleep 0.5
scancel "$jid"
sed 's/^/  /' sig.out | grep -v 'CANCELLED\|Terminated\|error'
got=$(grep -m1 'batch shell got USR1 at' sig.out | awk '{print $NF}')
ended=$(grep -m1 'foreground child ended at' sig.out | awk '{print $NF}')
got2=$(grep 'batch shell got USR1 at' sig.out | sed -n 2p | awk '{print $NF}')
echo "  first -b signal: trap ran $(((got - sent) / 1000000)) ms after scancel, $(((got - ended) / 1000000)) ms after the foreground child ended"
echo "  second -b signal (shell in 'wait'): trap ran $(((got2 - sent2) / 1000000)) ms after scancel"
check "scancel -b reaches the batch shell only, not its foreground child" \
	test "$(grep -c 'foreground child got USR1' sig.out)" = 0
check "bash runs the trap only once the foreground child has ended (4 s later)" \
	test $(((got - sent) / 1000000)) -ge 2000 -a $(((ended - got) / 1000000)) -lt 1000
check "scancel --signal (no -b) reaches each step task and not the batch shell" \
	test "$(grep -c 'task . got USR1' sig.out)" = 3 -a "$(grep -c 'batch shell got' sig.out)" = 2

echo "== 5. a slurmd killed mid-job (SlurmdTimeout=$SLURMD_TIMEOUT)"
cat >long.sh <<'EOF'
#!/bin/bash
echo "run restart=${SLURM_RESTART_COUNT:-unset} nodes=$SLURM_JOB_NODELIST"
srun bash -c 'echo started on $(hostname); while :; do sleep 0.2; done'
echo "srun exited $?"
EOF
jid=$(sbatch --parsable -N3 -w node[1-3] -o nodefail.out long.sh)
wait_file nodefail.out '^started' 3 || true
t0=$(now_ms)
"$HERE/node.sh" kill-slurmd node3
nr="" down="" ended=""
while [ $(($(now_ms) - t0)) -lt 90000 ]; do
	st=$(sinfo -h -n node3 -o %T)
	[ -z "$nr" ] && case $st in *'*') nr=$(($(now_ms) - t0)) ;; esac
	[ -z "$down" ] && case $st in down*) down=$(($(now_ms) - t0)) ;; esac
	[ -z "$ended" ] && [ "$(state "$jid")" != RUNNING ] && ended=$(($(now_ms) - t0))
	[ -n "$down" ] && [ -n "$ended" ] && break
	sleep 0.1
done
sleep 1
sed 's/^/  /' nodefail.out | grep -v '^  [0-9]*: \(Terminated\)'
echo "  node3 not responding after ${nr} ms, DOWN after ${down} ms, job ended after ${ended} ms as $(state "$jid")"
left=$("$HERE/node.sh" pids node3 | xargs -r ps -o comm= -p | grep -v '^sleep$' | sort | uniq -c | tr -s ' \n' ' ')
echo "  left on node3 (besides sleeps): $left"
check "the job ends NODE_FAIL" test "$(state "$jid")" = NODE_FAIL
check "the dead node's slurmstepd and tasks live on" bash -c "echo '$left' | grep -q slurmstepd"
t0=$(now_ms)
"$HERE/node.sh" start-slurmd node3
idle="" clean=""
while [ $(($(now_ms) - t0)) -lt 60000 ]; do
	[ -z "$idle" ] && [ "$(sinfo -h -n node3 -o %T)" = idle ] && idle=$(($(now_ms) - t0))
	[ -z "$clean" ] && ! "$HERE/node.sh" pids node3 | xargs -r ps -o comm= -p | grep -q slurmstepd && clean=$(($(now_ms) - t0))
	[ -n "$idle" ] && [ -n "$clean" ] && break
	sleep 0.1
done
echo "  slurmd restarted: node3 idle after ${idle} ms, the orphaned step gone after ${clean} ms"
check "a restarted slurmd returns the node to service and its orphans are killed" test -n "$idle" -a -n "$clean"

echo "== 6. requeue"
jid=$(sbatch --parsable -N2 -o norequeue.out long.sh)
wait_running "$jid"
out=$(scontrol requeue "$jid" 2>&1)
echo "  scontrol requeue of a job without --requeue: $out"
check "refused (JobRequeue=0)" bash -c "[ '$(state "$jid")' = RUNNING ]"
scancel "$jid"
jid=$(sbatch --parsable -N2 --requeue --open-mode=append -o requeue.out long.sh)
wait_running "$jid"
wait_file requeue.out '^started' 2
t0=$(now_ms)
scontrol requeue "$jid"
sleep 0.5
echo "  after requeue: $(squeue -h -j "$jid" -o '%T reason=%r')"
wait_running "$jid" 120
echo "  running again after $(($(now_ms) - t0)) ms (cred_expire=10 s, sched_interval=2 s)"
wait_file requeue.out 'restart=1' 1 10
sed 's/^/  /' requeue.out | grep -v 'CANCELLED\|Terminated\|error'
check "the requeued run sees SLURM_RESTART_COUNT=1, same job id" grep -q 'run restart=1' requeue.out
scancel "$jid"
jid=$(sbatch --parsable -N3 --requeue -o nodefail-requeue.out long.sh)
wait_running "$jid"
wait_file nodefail-requeue.out '^started' 3 || true
first=$(nodes_of "$jid")
victim=$(scontrol show hostnames "$first" | sed -n 2p)
t0=$(now_ms)
"$HERE/node.sh" kill-slurmd "$victim"
sleep 1
while [ $(($(now_ms) - t0)) -lt 90000 ]; do
	now_on=$(nodes_of "$jid")
	[ "$(state "$jid")" = RUNNING ] && [ -n "$now_on" ] && [ "$now_on" != "$first" ] && break
	sleep 0.1
done
echo "  --requeue job on $first after $victim's slurmd was killed: $(state "$jid") on $(nodes_of "$jid") after $(($(now_ms) - t0)) ms"
wait_file nodefail-requeue.out 'restart=1' 1 10
sed 's/^/  /' nodefail-requeue.out | grep '^  run'
check "a --requeue job hit by a node failure runs again on other nodes with SLURM_RESTART_COUNT=1" \
	bash -c "scontrol show hostnames \$(sed -n 's/^run restart=1 nodes=//p' nodefail-requeue.out) | grep -q . &&
		! scontrol show hostnames \$(sed -n 's/^run restart=1 nodes=//p' nodefail-requeue.out) | grep -qx '$victim'"
check "the output file was truncated for the new run (no --open-mode=append)" \
	test "$(grep -c '^run' nodefail-requeue.out)" = 1
scancel "$jid"
"$HERE/node.sh" start-slurmd "$victim"

echo "== 7. unix sockets on the shared file system, abstract sockets"
cat >unix.py <<'EOF'
import os, socket, sys, time
path, mode = sys.argv[1], sys.argv[2]
abstract = path.startswith("@")
if abstract:
    path = "\0" + path[1:]   # Linux abstract namespace: no file
me = socket.gethostname()
s = socket.socket(socket.AF_UNIX)
if mode == "serve":
    s.bind(path); s.listen()
    if not abstract:
        open(path + ".ready", "w").close()
    s.settimeout(20)
    try:
        c, _ = s.accept(); c.sendall(me.encode()); c.close()
    except socket.timeout:
        pass
elif mode == "bind":
    try:
        s.bind(path); print(f"{me}: bind ok")
    except OSError as e:
        print(f"{me}: bind {e.strerror}")
else:
    try:
        s.connect(path); print(f"{me}: connected to a server on {s.recv(64).decode()}")
    except OSError as e:
        print(f"{me}: connect {e.strerror}")
EOF
rm -f "$W/sock" "$W/sock.ready"
"$HERE/node.sh" exec node1 python3 "$W/unix.py" "$W/sock" serve &
server=$!
wait_exists "$W/sock.ready" 10
b=$(on node2 python3 "$W/unix.py" "$W/sock" bind)
c=$(on node2 python3 "$W/unix.py" "$W/sock" connect)
wait "$server"
echo "  node1 serves $W/sock; $b; $c"
check "same path on another node: bind fails (Address already in use) and connect reaches node1" \
	test "$b" = "node2: bind Address already in use" -a "$c" = "node2: connected to a server on node1"
"$HERE/node.sh" exec node1 python3 "$W/unix.py" "@snapc-facts" serve >/dev/null &
server=$!
sleep 0.5
b=$(on node2 python3 "$W/unix.py" "@snapc-facts" bind)
kill "$server" 2>/dev/null
wait "$server" 2>/dev/null
echo "  $b"
check "abstract unix sockets are per node (per network namespace)" test "$b" = "node2: bind ok"

echo "== 8. processes a task leaves behind"
cat >leave.sh <<'EOF'
sleep 301 </dev/null >/dev/null 2>&1 &
setsid sleep 302 </dev/null >/dev/null 2>&1 &
echo "left $! on $(hostname)"
EOF
srun -N1 -w node2 bash leave.sh | sed 's/^/  /'
sleep 1
left=$("$HERE/node.sh" pids node2 | xargs -r ps -o args= -p | grep -c '^sleep 30[12]$')
echo "  after the step ended: $left of 2 left-behind processes still run on node2"
check "proctrack/linuxproc does not kill what a task left behind (cgroup sites would)" test "$left" = 2

echo "== 9. sbatch --signal=B:USR1@30 with a 1-minute limit"
wait_file timelimit.out 'USR1 after' 1 100
echo "  $(head -1 timelimit.out 2>/dev/null) from the job's start (asked: 30 s before the limit, i.e. after 30 s)"
check "delivered to the batch shell before the limit" grep -q 'USR1 after' timelimit.out
scancel "$tl_job"

echo "facts: $pass passed, $fail failed"
[ $fail = 0 ]
