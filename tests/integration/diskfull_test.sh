#!/bin/sh
# A full disk (not a full LMDB map, which grows: that is covered
# elsewhere).  lv's data directory is a 3 MiB tmpfs and ee has far more to
# send it.  While the disk is full lv must say so clearly, must not
# acknowledge a batch it did not commit, and must keep answering nbxq and
# nbxctl; once space is freed (the tmpfs grows to 64 MiB) it resumes by
# itself and converges with ee and fi, nothing lost.
. "$(dirname "$0")/lib.sh"

N=20000
MAP_MB=64	# the map is larger than the disk: the disk fills first
export MAP_MB
nbx_ca
nbx_node ee 1
nbx_node lv 2
nbx_node fi 3
nbx_peer ee lv
nbx_peer lv ee
nbx_peer lv fi
nbx_peer fi lv
MNT=$T/lv/data
mkdir -p "$MNT"
if ! mount -t tmpfs -o size=3m,mode=0700 tmpfs "$MNT" 2>/dev/null; then
	echo "skipped: cannot mount tmpfs (not privileged)"
	exit 0
fi
# the daemons must be gone before the tmpfs can be unmounted, and it must
# be unmounted before lib.sh removes $T
diskfull_cleanup() {
	while read -r id pid; do kill -KILL "$pid" 2>/dev/null || true; done <"$PIDS_FILE"
	i=0
	while mountpoint -q "$MNT" && ! umount "$MNT" 2>/dev/null; do
		i=$((i + 1))
		[ $i -lt 30 ] || { umount -l "$MNT" || true; break; }
		sleep 0.1
	done
	cleanup
}
trap diskfull_cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
LVLOG=$T/lv/nbxd.log
bad=""

nbx_start ee
awk -v n="$N" 'BEGIN { for (i = 0; i < n; i++)
	printf "{\"collection\":\"service\",\"id\":\"ee:svc-%06d\",\"fields\":{\"name\":\"Service %d\",\"kind\":\"shelter\",\"country\":\"ee\",\"city\":\"Tallinn\",\"capacity\":%d,\"open_24h\":true,\"languages\":[\"et\",\"ru\",\"en\"]}}\n", i, i, i % 50 }' |
    ctl ee import - >"$T/import.out" || fail "import: $(cat "$T/import.out")"
ee_seq=$(ctl ee status --json | sed -n 's/.*"node":{[^}]*"seq":\([0-9]*\).*/\1/p')
per=$((ee_seq / N))
[ $((per * N)) = "$ee_seq" ] || fail "ee: $ee_seq changes for $N records is not a whole number per record"
ok "ee holds $N records ($ee_seq changes, about $(du -m "$T/ee/data/data.mdb" | cut -f1) MiB); lv's disk is 3 MiB"

nbx_start fi
nbx_start lv
# --- the disk fills ---------------------------------------------------------
wait_until 30 "lv fails to commit" grep -q "session error: .*commit" "$LVLOG"
[ "$(df --output=avail -B1 "$MNT" | tail -n 1)" -lt 65536 ] || fail "lv's commit failed but its disk is not full"
line=$(grep -m 1 "session error: .*commit" "$LVLOG")
echo "lv: $line"
if ! printf '%s\n' "$line" | grep -qi "no space\|disk full\|ENOSPC"; then
	bad="$bad; the commit failure does not say the disk is full: '${line#* warn }'"
fi
kill -0 "$(cat "$T/lv/pid")" || fail "lv died when its disk filled"
ok "lv's disk is full, nbxd runs on"

# reads and the control socket still work
held=$(q lv count service) || fail "nbxq count fails while the disk is full"
[ "$held" -lt "$N" ] || fail "lv holds all $N records on a 3 MiB disk?"
q lv list service --limit 5 --format csv >/dev/null || fail "nbxq list fails while the disk is full"
q lv get service ee:svc-000000 >/dev/null || fail "nbxq get fails while the disk is full"
ctl lv status >/dev/null || fail "nbxctl status fails while the disk is full"
ctl lv peer list >/dev/null || fail "nbxctl peer list fails while the disk is full"
ok "while full: nbxq count/list/get and nbxctl status answer ($held records held)"

# compaction needs room for a copy: refused with a clear message, store intact
set +e
out=$(ctl lv compact 2>&1); rc=$?
set -e
[ $rc = 1 ] || fail "compact on a full disk: exit $rc ($out)"
echo "$out" | grep -q "not enough free space to compact" || fail "compact message: $out"
[ -e "$MNT/compact.tmp" ] && fail "compact left a partial copy"
[ "$(q lv count service)" = "$held" ] || fail "compact refusal changed the store"
ok "compact on a full disk refused: $out"

# nothing is acknowledged that lv did not commit: ee streams its log in
# order, $per changes a record, so lv holding C records has committed ee's
# log up to seq $per*C at most; ee's acked seq for lv must never pass it
bytes_to_lv() { ctl ee peer list --json | sed -n 's/^{"id":"lv",.*"bytes_out":\([0-9]*\),.*/\1/p'; }
i=0
ups=0
a0=$(wc -l <"$LVLOG")
b0=$(bytes_to_lv)
t0=$(date +%s)
while [ $i -lt 20 ]; do
	acked=$(ctl ee peer list --json | sed -n 's/^{"id":"lv",.*"acked_seq":\([0-9]*\),.*/\1/p')
	c=$(q lv count service)
	[ -n "$acked" ] || fail "no acked_seq for lv in ee's peer list"
	[ "$acked" -gt 0 ] && ups=$((ups + 1))
	[ "$acked" -le $((per * c)) ] || fail "ee holds an ack up to seq $acked from lv, which has committed only $c records (seq <= $((per * c)))"
	i=$((i + 1))
	sleep 0.1
done
secs=$(( $(date +%s) - t0 ))
[ "$secs" -gt 0 ] || secs=1
rate=$(( ($(wc -l <"$LVLOG") - a0) / secs ))
resent=$(( ($(bytes_to_lv) - b0) / secs / 1024 ))
ok "20 samples: ee's acked seq for lv never passed what lv committed ($ups samples mid-session)"
echo "while lv is full it logs $rate lines/s and ee sends it $resent KiB/s that it cannot commit"

# a small write while full: it may fit in pages LMDB freed, or fail clearly
set +e
ctl lv put service lv:while-full name="Written while full" kind=helpline >"$T/put.out" 2>&1
rc=$?
set -e
if [ $rc = 0 ]; then
	echo "a local write while full was committed (it fitted in freed pages)"
	has_field lv service lv:while-full name "Written while full" || fail "put said ok but the record is not there"
else
	[ $rc = 1 ] || fail "put while full: exit $rc: $(cat "$T/put.out")"
	echo "a local write while full was refused: $(cat "$T/put.out")"
	grep -qi "no space\|disk full" "$T/put.out" ||
	    bad="$bad; a write refused for lack of space does not say so: '$(cat "$T/put.out")'"
fi
# fi's small change: lv is asked to take it while full
ctl fi put service fi:small name="From fi" kind=medical >/dev/null
sleep 2
if has_field lv service fi:small name "From fi"; then
	echo "fi's small change reached lv while its disk was full"
else
	echo "fi's small change did not reach lv while its disk was full"
fi
kill -0 "$(cat "$T/lv/pid")" || fail "lv died while full"

# --- space is freed: lv resumes by itself and converges ----------------------
mount -o remount,size=64m "$MNT" || fail "cannot grow the tmpfs"
freed_at=$(date +%s)
# converged: the three nodes list as many services, more than ee's N
converged() {
	c=$(count lv service) && [ "$c" -gt "$N" ] &&
	    [ "$(count ee service)" = "$c" ] && [ "$(count fi service)" = "$c" ]
}
digest() { ctl "$1" verify "$2" --json | sed -n 's/.*"digest":"\([0-9a-f]*\)".*/\1/p'; }
same_digest() { d=$(digest "$1" "$2") && [ -n "$d" ] && [ "$d" = "$(digest "$2" "$1")" ]; }
wait_until 40 "lv catches up after space was freed" converged
resumed=$(( $(date +%s) - freed_at ))
wait_until 10 "ee-lv digests equal" same_digest ee lv
same_digest lv fi || fail "lv-fi digests differ"
q ee list service --format csv >"$T/ee.csv"
q lv list service --format csv >"$T/lv.csv"
q fi list service --format csv >"$T/fi.csv"
cmp -s "$T/ee.csv" "$T/lv.csv" || fail "ee and lv list different services after recovery"
cmp -s "$T/fi.csv" "$T/lv.csv" || fail "fi and lv list different services after recovery"
has_field lv service fi:small name "From fi" || fail "fi's change is missing on lv"
has_field ee service fi:small name "From fi" || fail "fi's change was not relayed to ee"
ok "space freed: lv resumed by itself and converged in ${resumed}s ($(count lv service) services, digests equal, nothing lost)"

[ -z "$bad" ] || fail "disk-full reporting${bad}"
