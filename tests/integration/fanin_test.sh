#!/bin/sh
# Fan-in: a node that comes back to three peers with a backlog each
# receives from all of them at once.  A loop turn takes a bounded share of
# what its peers sent (daemon/conn.c: read_yield) and of the batches it
# makes for them (conn__flush), and reading resumes at the next turn; this
# is where that happens most.  lv, fi and lt (a full mesh) each import
# FANIN_RECORDS records (default 15,000) while ee is down; ee is started
# and must end up with every record, equal `verify` digests with each
# peer, and none of the local-only notes.
. "$(dirname "$0")/lib.sh"

N=${FANIN_RECORDS:-15000}
NODES="ee lv fi lt"
nbx_ca
# shellcheck disable=SC2086
nbx_nodes $NODES
for a in $NODES; do
	for b in $NODES; do
		[ "$a" = "$b" ] || nbx_peer "$a" "$b"
	done
done
records() { ctl "$1" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["node"]["records"])'; }
has_records() { [ "$(records "$1")" = "$2" ]; }
for n in lv fi lt; do nbx_start "$n"; done
for n in lv fi lt; do
	awk -v n="$N" -v o="$n" 'BEGIN { for (i = 0; i < n; i++)
	    printf "{\"collection\":\"service\",\"id\":\"%s:svc-%06d\",\"fields\":" \
		"{\"name\":\"Service %d of %s\",\"organisation\":\"%s:org-%03d\"," \
		"\"kind\":\"shelter\",\"capacity\":%d,\"free_places\":%d," \
		"\"notes\":\"local note %d\"}}\n",
		o, i, i, o, o, i % 100, i % 50, i % 7, i }' >"$T/$n.jsonl"
	ctl "$n" import "$T/$n.jsonl" >"$T/$n.import" 2>&1 ||
	    fail "$n import: $(cat "$T/$n.import")"
done
total=$((3 * N))
for n in lv fi lt; do
	wait_until 60 "$n holds the three backlogs" has_records "$n" "$total"
done
ok "lv, fi and lt hold $total records between them, ee down"

nbx_start ee
# ee takes in the three streams at once
tries=0
until has_records ee "$total"; do
	tries=$((tries + 1))
	[ $tries -lt 600 ] || fail "ee holds $(records ee) of $total records after 60 s"
	sleep 0.1
done
ok "ee caught up on $total records from three peers at once"
for p in lv fi lt; do
	a=$(ctl ee verify "$p" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"])')
	b=$(ctl "$p" verify ee --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"])')
	[ -n "$a" ] && [ "$a" = "$b" ] || fail "ee and $p disagree: $a / $b"
done
ok "ee's verify digests equal those of lv, fi and lt"
[ "$(q ee count service --where 'notes~local')" = 0 ] ||
    fail "local-only notes reached ee"
ok "no local-only field crossed"
