#!/bin/sh
# make test-stress: the test command under the conditions a CI machine or
# a laptop may impose, to show the suite decides on orderings, not speed.
# Runs `make test` STRESS_N times (default 3) on an idle machine, STRESS_N
# times with every core kept busy by a CPU hog (one `yes` per core), and
# once pinned to a single core (taskset -c 0).  One summary line per pass,
# then "test-stress: N passed, M failed"; exit 1 if any pass failed.  Each
# pass's whole output is kept in $BUILD/stress/PASS.log.
set -u
BUILD=${BUILD:-build}
N=${STRESS_N:-3}
LOGS=$BUILD/stress
mkdir -p "$LOGS"
HOGS=""
stop_hogs() {
	[ -n "$HOGS" ] && kill $HOGS 2>/dev/null
	HOGS=""
}
trap stop_hogs EXIT
trap 'exit 130' INT TERM HUP

passed=0
failed=0
# run NAME [PREFIX...]: one `make test`, with PREFIX before make
run() {
	name=$1
	shift
	log=$LOGS/$name.log
	start=$(date +%s)
	if "$@" make --no-print-directory test >"$log" 2>&1; then
		r=PASS
		passed=$((passed + 1))
	else
		r=FAIL
		failed=$((failed + 1))
	fi
	unit=$(grep '^unit: [0-9]* passed' "$log" | tail -n 1)
	integ=$(grep '^integration: [0-9]* passed' "$log" | tail -n 1)
	echo "test-stress: $name $r in $(( $(date +%s) - start ))s (${unit:-unit: no summary}; ${integ:-integration: no summary})"
	if [ "$r" = FAIL ]; then
		grep -E '^(FAIL|unit: .*(HUNG|did not report))' "$log" | head -n 10 |
		    sed 's/^/    /'
	fi
}

for i in $(seq 1 "$N"); do
	run "idle-$i"
done
for i in $(seq 1 "$N"); do
	for c in $(seq 1 "$(nproc)"); do
		yes >/dev/null &
		HOGS="$HOGS $!"
	done
	run "loaded-$i"
	stop_hogs
done
if command -v taskset >/dev/null 2>&1; then
	run one-core taskset -c 0
else
	echo "test-stress: one-core FAIL: taskset missing (Debian package util-linux)"
	failed=$((failed + 1))
fi
echo "test-stress: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
