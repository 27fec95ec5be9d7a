#!/bin/sh
# Runs each Criterion unit-test binary given as argument and prints one
# closing line "unit: N passed, M failed" over all of them.  Exits 1 if any
# test failed or crashed, or if a binary did not report.
#
# A binary gets UNIT_TIMEOUT seconds (default 300; the slowest takes ~20),
# a safety net only: one that runs out of time has hung, fails, and says
# so with what it printed until then.  It is never run again (a rerun
# would hide the hang).
set -u
pass=0
fail=0
bad=0
for t in "$@"; do
	out=$(timeout -k 10 "${UNIT_TIMEOUT:-300}" "$t" --jobs 2 2>&1)
	rc=$?
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		printf '%s\n' "$out" | tail -n 40
		echo "unit: $(basename "$t") HUNG: not finished after ${UNIT_TIMEOUT:-300} s (its last output above)"
		bad=1
		fail=$((fail + 1))
		continue
	fi
	line=$(printf '%s\n' "$out" | grep 'Synthesis:' | tail -n 1)
	if [ -z "$line" ]; then
		printf '%s\n' "$out"
		echo "unit: $t did not report (exit $rc)"
		bad=1
		continue
	fi
	p=$(printf '%s' "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
	f=$(printf '%s' "$line" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
	c=$(printf '%s' "$line" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
	pass=$((pass + p))
	fail=$((fail + f + c))
	# a sanitizer report in a forked test worker does not fail the test
	# by itself: count it here
	if printf '%s\n' "$out" | grep -qE 'ERROR: (Leak|Address)Sanitizer|runtime error:'; then
		printf '%s\n' "$out" | grep -E -A20 'ERROR: (Leak|Address)Sanitizer|runtime error:' | head -60
		echo "unit: $(basename "$t"): sanitizer report"
		f=$((f + 1))
	fi
	if [ "$rc" -ne 0 ] || [ "$((f + c))" -ne 0 ]; then
		printf '%s\n' "$out"
		bad=1
	else
		printf '%s\n' "$out" | grep -E '^(seed|property)' || true
		echo "$(basename "$t"): $p passed"
	fi
done
echo "unit: $pass passed, $fail failed"
[ "$bad" -eq 0 ] && [ "$fail" -eq 0 ]
