#!/bin/sh
# instructions.sh: the instructions nbxd executes for one workload, counted
# by valgrind's callgrind.  Unlike the seconds of `make bench`, the count
# does not move with the load of a shared machine, so two builds can be
# compared by a single run each.  POSIX sh; a tool, not a test.
#
#   tests/bench/instructions.sh [-b BUILD_DIR] [-o OUT_PREFIX] import|sync [N]
#
#   import  nbxctl import of N records (default 20,000) into one node (ee)
#           running under callgrind
#   sync    N records imported into ee, then ee and an empty lv both under
#           callgrind until lv holds all of them (an initial sync)
#
# The records are the bench's (tests/bench/run.sh, gen).  Prints, per
# nbxd (and per thread for import: the loop, then the thread pool's),
# the instructions executed, start-up included (about 20M).  The callgrind
# files are kept as OUT_PREFIX.* (default /tmp/nbx-instr) for
# callgrind_annotate.  BUILD_DIR defaults to the repository's build/.
NBX_REPO=$(cd "$(dirname "$0")/../.." && pwd)
export NBX_REPO
OUT=/tmp/nbx-instr
B=
while getopts b:o: opt; do
	case $opt in
	b) B=$OPTARG ;;
	o) OUT=$OPTARG ;;
	*) echo "usage: $0 [-b BUILD_DIR] [-o OUT_PREFIX] import|sync [N]" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
WHAT=${1:-}
N=${2:-20000}
case $WHAT in import|sync) ;; *)
	echo "usage: $0 [-b BUILD_DIR] [-o OUT_PREFIX] import|sync [N]" >&2; exit 2 ;;
esac
command -v valgrind >/dev/null || { echo "$0: needs valgrind" >&2; exit 1; }
# under callgrind a loop runs ~50 times slower: no link may be declared
# dead for that
DEAD_MS=600000
MAP_MB=4096
BATCH_BYTES=1048576
export DEAD_MS MAP_MB BATCH_BYTES
if [ -n "$B" ]; then
	NBX_BIN=$(cd "$B" && pwd)
	export NBX_BIN
fi
. "$NBX_REPO/tests/integration/lib.sh"
[ -x "$BIN/nbxd" ] || fail "no nbxd in $BIN (make first)"

# cg_start NODE: nbxd under callgrind (its file OUT.NODE)
cg_start() {
	NBXD_WRAP="valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=$OUT.$1" \
	    START_TRIES=600 nbx_start "$1"
}
records() { ctl "$1" status --json | grep -o '"records":[0-9]*' | head -n 1 | cut -d: -f2; }

rm -f "$OUT".*
nbx_ca
awk -v n="$N" 'BEGIN { for (i = 0; i < n; i++)
    printf "{\"collection\":\"service\",\"id\":\"ee:svc-%07d\",\"fields\":" \
	"{\"name\":\"Support service number %d\",\"organisation\":\"ee:org-%04d\"," \
	"\"country\":\"ee\",\"city\":\"Tallinn\",\"kind\":\"shelter\",\"capacity\":%d," \
	"\"free_places\":%d,\"phone\":\"+372 600 %04d\",\"notes\":\"internal note %d\"}}\n",
	i, i, i % 1000, i % 50, i % 7, i % 10000, i }' >"$T/records.jsonl"
nbx_node ee 1
nbx_node lv 2
# sync: only lv dials.  Were ee to dial lv too, its dial could land after
# lv's, and the rule that keeps ee's would drop a session already
# streaming, whose unacknowledged batches are then sent again: a count
# that moves with the timing of the two starts.
if [ "$WHAT" = sync ]; then
	nbx_peer_via ee lv $((PORT_BASE + 9))	# nothing listens there
else
	nbx_peer ee lv
fi
nbx_peer lv ee
if [ "$WHAT" = import ]; then
	cg_start ee
	ctl ee import "$T/records.jsonl" >/dev/null || fail "import failed"
	nbx_stop ee
else
	nbx_start ee
	ctl ee import "$T/records.jsonl" >/dev/null || fail "import failed"
	nbx_stop ee
	cg_start ee
	cg_start lv
	i=0
	until [ "$(records lv)" -ge "$N" ] 2>/dev/null; do
		i=$((i + 1))
		[ $i -lt 3000 ] || fail "lv did not get $N records"
		sleep 0.2
	done
	nbx_stop lv
	nbx_stop ee
fi
# with --separate-threads, one file per thread (-01: the loop)
for f in "$OUT".*; do
	n=$(sed -n 's/^summary: //p' "$f")
	[ -z "$n" ] || printf '%-24s %15s instructions\n' "${f##*/}" "$n"
done
