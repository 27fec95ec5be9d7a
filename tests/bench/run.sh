#!/bin/sh
# make bench: initial sync of BENCH_RECORDS records (default 1,000,000;
# ~200 bytes, 8 fields each) from ee to a fresh lv, two real nbxd over
# TLS 1.3 on 127.0.0.1.  The baseline, run side by side on the same
# machine and data, is ee's own bulk import of the same records into
# LMDB: sync is reported as records/s and as a ratio to that baseline.
# A benchmark, not a test: it reports, it does not pass or fail on speed.
NBX_REPO=$(cd "$(dirname "$0")/../.." && pwd)
. "$NBX_REPO/tests/integration/lib.sh"

N=${BENCH_RECORDS:-1000000}
MAP_MB=4096
export MAP_MB
now() { date +%s.%N; }

nbx_ca
nbx_node ee 1
nbx_node lv 2
nbx_peer ee lv
nbx_peer lv ee

awk -v n="$N" 'BEGIN { for (i = 0; i < n; i++)
	printf "{\"collection\":\"service\",\"id\":\"ee:svc-%07d\",\"fields\":{\"name\":\"Support service number %d\",\"organisation\":\"ee:org-%04d\",\"country\":\"ee\",\"city\":\"Tallinn\",\"kind\":\"shelter\",\"capacity\":%d,\"free_places\":%d,\"phone\":\"+372 600 %04d\"}}\n", i, i, i % 1000, i % 50, i % 7, i % 10000 }' \
    >"$T/records.jsonl"
bytes=$(wc -c <"$T/records.jsonl")
echo "bench: $N records, $((bytes / N)) bytes of JSON each, 8 fields"

nbx_start ee
t0=$(now)
ctl ee import "$T/records.jsonl" >"$T/import.out"
t1=$(now)
cat "$T/import.out"

nbx_start lv
t2=$(now)
while :; do
	got=$(ctl lv status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["node"]["records"])')
	[ "$got" -ge "$N" ] && break
	sleep 0.2
done
t3=$(now)
python3 - "$N" "$t0" "$t1" "$t2" "$t3" <<'PY'
import sys
n = int(sys.argv[1]); t0, t1, t2, t3 = map(float, sys.argv[2:])
imp, syn = t1 - t0, t3 - t2
print(f"baseline  local import into LMDB : {n / imp:10.0f} records/s ({imp:.1f} s)")
print(f"nbx       initial sync over TLS  : {n / syn:10.0f} records/s ({syn:.1f} s)")
print(f"ratio     sync / local import    : {imp / syn:.2f}")
PY
du -sh "$T/ee/data" "$T/lv/data" | sed 's/^/store size: /'
