#!/bin/sh
# make demo: a small federation on loopback.  A throwaway regional CA and
# three nodes (ee, lv, fi) on 127.0.0.1, peered with each other; ee writes
# organisations, services and one case referral to lv; then each node shows
# what it holds: lv sees the case's permitted fields, fi does not see the
# case at all, and nobody but ee sees ee's local fields.
NBX_REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$NBX_REPO/tests/integration/lib.sh"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Regional CA and node certificates (nbxctl ca)"
nbx_ca
for n in ee lv fi; do
	case $n in ee) i=1 ;; lv) i=2 ;; fi) i=3 ;; esac
	nbx_node $n $i
	echo "node $n: $(cat "$T/$n/issue.out" | tail -n 1)"
done
nbx_peer ee lv; nbx_peer ee fi
nbx_peer lv ee; nbx_peer lv fi
nbx_peer fi ee; nbx_peer fi lv

say "Starting nbxd for ee, lv and fi on 127.0.0.1"
for n in ee lv fi; do nbx_start $n; done
wait_until 15 "all peers up" sh -c "for n in ee lv fi; do '$BIN/nbxctl' -c '$T/'\$n'/nbx.conf' status --json | python3 -c 'import json,sys; sys.exit(0 if all(p[\"state\"]==\"up\" for p in json.load(sys.stdin)[\"peers\"]) else 1)' || exit 1; done"
ctl ee status

say "ee writes organisations, services and a case referral to lv"
set -x
ctl ee put organisation ee:ltf name="Living for Tomorrow" country=ee kind=ngo troika_member=true languages=et,ru,en internal_notes="board meets Tuesdays"
ctl lv put organisation lv:marta name="Marta Centre" country=lv kind=ngo languages=lv,ru,en
ctl ee put service ee:shelter-1 name="Tallinn women's shelter" kind=shelter country=ee city=Tallinn capacity=12 free_places=3 open_24h=true languages=et,ru address="(secret address)"
ctl fi put service fi:helpline name="Victim helpline" kind=helpline country=fi open_24h=true languages=fi,sv,en
ctl ee put case ee:case-0042 --audience ee,lv pseudonym=K-0042 country_of_origin=LV destination_country=LV referral_date=2026-11-20 status=referred consent_given=true needs_shelter=true legal_name="(real name, stays in ee)" case_notes="(notes, stay in ee)"
set +x

say "Waiting for sync"
wait_until 20 "lv has the case" has_field lv case ee:case-0042 pseudonym K-0042
wait_until 20 "fi has ee's service" has_field fi service ee:shelter-1 name "Tallinn women's shelter"
wait_until 20 "ee has fi's service" has_field ee service fi:helpline name "Victim helpline"
sleep 1

for n in ee lv fi; do
	say "What $n holds"
	echo "-- services:"; q $n list service --fields name,kind,country,free_places
	echo "-- organisations:"; q $n list organisation --fields name,country,troika_member
	echo "-- case ee:case-0042:"; q $n get case ee:case-0042 2>&1 || true
done

say "lv accepts the referral (status is writable by the audience)"
ctl lv put case ee:case-0042 status=accepted receiving_organisation="Marta Centre"
wait_until 20 "ee sees acceptance" has_field ee case ee:case-0042 status accepted
q ee get case ee:case-0042 --meta

say "Peers as ee sees them"
ctl ee status
say "Disclosure log: who received case ee:case-0042"
q ee disclosures case ee:case-0042

say "Stopping the nodes"
for n in ee lv fi; do nbx_stop $n; done
echo "demo done: fi never received the case; ee's local fields never left ee."
