#!/bin/sh
# Runs every tests/integration/*.sh with the built programs in $BUILD and
# prints "integration: N passed, M failed".  Each script starts its own
# nbxd processes on 127.0.0.1 and cleans up after itself.
set -u
BUILD=${BUILD:-build}
export NBX_BIN="$(cd "$BUILD" && pwd)"
# sanitizer builds write their reports here (nothing appears otherwise)
SAN_DIR="$(pwd)/$BUILD/sanitizer"
rm -rf "$SAN_DIR"
mkdir -p "$SAN_DIR"
export ASAN_OPTIONS="log_path=$SAN_DIR/asan:detect_leaks=1"
export UBSAN_OPTIONS="log_path=$SAN_DIR/ubsan:print_stacktrace=1"
pass=0
fail=0
for t in tests/integration/*_test.sh; do
	[ -e "$t" ] || continue
	start=$(date +%s)
	if sh "$t" >"$BUILD/$(basename "$t").log" 2>&1; then
		pass=$((pass + 1))
		echo "PASS $(basename "$t") ($(( $(date +%s) - start ))s)"
	else
		fail=$((fail + 1))
		echo "FAIL $(basename "$t"); its log:"
		grep '^FAIL' "$BUILD/$(basename "$t").log" | head -n 5
		tail -n 60 "$BUILD/$(basename "$t").log"
	fi
done
if ls "$SAN_DIR"/* >/dev/null 2>&1; then
	echo "sanitizer reports from the programs under test:"
	head -n 40 "$SAN_DIR"/*
	fail=$((fail + 1))
fi
echo "integration: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
