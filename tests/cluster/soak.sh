#!/bin/bash
# Reliability check of the test cluster: CYCLES times (default 20) bring it up
# fresh, run `srun -N$NODES hostname`, an MPI program through
# `srun --mpi=pmix` (2 ranks per node), a `sbatch --wait` job, take it down,
# and check that nothing is left behind. Prints one line per cycle with the
# up and down times and ends with "N passed, N failed".
#
#   CYCLES=20 NODES=3 tests/cluster/soak.sh
set -uo pipefail
. "$(dirname "$0")/common.sh"
need_root
# The whole run holds the cluster lock: up.sh and down.sh inside it do not
# take it again, and no test can take the cluster away meanwhile.
with_lock "$@"
CYCLES=${CYCLES:-20}
names=$(seq -f 'node%g' 1 "$NODES" | tr '\n' ' ')
work=$(mktemp -d /tmp/snapc-soak.XXXXXX)
# what a failed cycle leaves for a post-mortem: outputs and the cluster's logs
keep=$(mktemp -d /tmp/snapc-soak-failures.XXXXXX)
trap 'rm -rf "$work"; rmdir "$keep" 2>/dev/null' EXIT
mpicc -O2 -o "$work/mpi_hello" "$HERE/mpi_hello.c" || die "mpicc failed (apt-get install libopenmpi-dev)"
cat >"$work/job.sh" <<'EOF'
#!/bin/bash
echo "batch on $(hostname)"
srun hostname | sort
EOF
ms() { echo $((($(date +%s%N) - $1) / 1000000)); }
leftovers() {
	local p
	p=$(pgrep -f -- "$S/" | tr '\n' ' ')
	[ -n "$p" ] && echo "processes: $p"
	ip link show "$BRIDGE" >/dev/null 2>&1 && echo "bridge $BRIDGE"
	ip -o link | grep -q ' sc-' && echo "veths: $(ip -o link | grep ' sc-' | awk -F': ' '{print $2}')"
	grep -l -- "$S" /proc/[0-9]*/mountinfo 2>/dev/null | head -3
	[ -e "$S/run/head.anchor" ] && echo "anchor records"
	return 0
}

export SLURM_CONF=$S/etc/slurm/slurm.conf
pass=0 fail=0
for i in $(seq "$CYCLES"); do
	errs=""
	t=$(date +%s%N)
	"$HERE/up.sh" --fresh 2>"$work/up.log" || errs="$errs up($(tail -1 "$work/up.log"))"
	up_ms=$(ms "$t")
	cd "$work" || exit 1
	t=$(date +%s%N)
	out=$(timeout 60 srun -N"$NODES" hostname 2>&1 | sort | tr '\n' ' ')
	[ "$out" = "$names" ] || errs="$errs srun($out)"
	srun_ms=$(ms "$t")
	t=$(date +%s%N)
	out=$(timeout 60 srun -N"$NODES" --ntasks-per-node=2 --mpi=pmix ./mpi_hello 2>&1)
	if [ "$(echo "$out" | grep -c "sum $((NODES * 2 * (NODES * 2 - 1) / 2))\$")" != $((NODES * 2)) ]; then
		echo "$out" >"$keep/mpi-$i.out"
		errs="$errs mpi(see $keep/mpi-$i.out: $(echo "$out" | grep -v '^rank\|^srun: job' | head -3 | tr '\n' '|' | cut -c1-200))"
	fi
	mpi_ms=$(ms "$t")
	t=$(date +%s%N)
	out=$(timeout 60 sbatch --wait -N"$NODES" -o "$work/job-%j.out" job.sh 2>&1) || errs="$errs sbatch($out)"
	got=$(cat "$work"/job-*.out 2>/dev/null | tr '\n' ' ')
	[ "$got" = "batch on node1 $names" ] || errs="$errs sbatch-output($got)"
	rm -f "$work"/job-*.out
	sbatch_ms=$(ms "$t")
	cd / || exit 1
	t=$(date +%s%N)
	"$HERE/down.sh" 2>"$work/down.log" || errs="$errs down($(tail -1 "$work/down.log"))"
	down_ms=$(ms "$t")
	left=$(leftovers)
	[ -z "$left" ] || errs="$errs leftovers($left)"
	if [ -z "$errs" ]; then
		pass=$((pass + 1))
		r=ok
	else
		fail=$((fail + 1))
		r="FAIL:$errs"
		cp -r "$S/log" "$keep/log-$i" 2>/dev/null
	fi
	printf 'cycle %2d: up %4d ms, srun %4d ms, mpi %4d ms, sbatch %4d ms, down %4d ms: %s\n' \
		"$i" "$up_ms" "$srun_ms" "$mpi_ms" "$sbatch_ms" "$down_ms" "$r"
done
[ $fail = 0 ] || echo "failed cycles' outputs and logs: $keep"
echo "soak: $pass passed, $fail failed"
[ $fail = 0 ]
