#!/bin/sh
# A node restored from a hot backup gets every record back, its own
# included, and its later writes reach every peer.  A mesh ee, lv, fi;
# `mdb_copy -c` of ee's store while it runs; then ee writes three records
# and renames one, lv writes one; ee is stopped, the backup put in place,
# and ee started: nothing else is done.  The log stream alone cannot bring
# back ee's own later records (peers leave a peer's own changes out of
# its stream); reconciliation on connect does.
. "$(dirname "$0")/lib.sh"

nbx_ca
nbx_mesh ee lv fi
for i in 1 2 3; do
	ctl ee put service ee:s$i name="Shelter $i" kind=shelter >/dev/null
done
ctl lv put service lv:s1 name="Helpline" kind=helpline >/dev/null
for n in lv fi; do
	wait_until 30 "$n has ee's services" has_field $n service ee:s3 name "Shelter 3"
done
wait_until 30 "ee has lv's service" has_field ee service lv:s1 name "Helpline"
mkdir "$T/backup"
mdb_copy -c "$T/ee/data" "$T/backup" || fail "mdb_copy of the running ee"
ok "backup of the running ee taken with mdb_copy -c"

for i in 4 5 6; do
	ctl ee put service ee:s$i name="Shelter $i" kind=shelter >/dev/null
done
ctl ee put service ee:s1 name="Shelter one" >/dev/null
ctl lv put service lv:s2 name="Legal aid" kind=legal_aid >/dev/null
for n in lv fi; do
	wait_until 30 "$n has ee's later services" has_field $n service ee:s6 name "Shelter 6"
	wait_until 30 "$n has ee's rename" has_field $n service ee:s1 name "Shelter one"
done
wait_until 30 "fi has lv's later service" has_field fi service lv:s2 name "Legal aid"
wait_until 30 "ee has lv's later service" has_field ee service lv:s2 name "Legal aid"
ok "after the backup: ee wrote 3 and renamed 1, lv wrote 1; all nodes hold them"

nbx_stop ee
rm -rf "$T/ee/data"
mkdir "$T/ee/data"
cp "$T/backup/data.mdb" "$T/ee/data/data.mdb"
nbx_start ee
for i in 1 2 3 4 5 6; do
	wait_until 30 "restored ee has ee:s$i" has_field ee service ee:s$i kind shelter
done
wait_until 30 "restored ee has its rename back" has_field ee service ee:s1 name "Shelter one"
wait_until 30 "restored ee has lv:s2" has_field ee service lv:s2 name "Legal aid"
[ "$(count ee service)" = 8 ] || fail "restored ee holds $(count ee service) services, not 8"
for n in lv fi; do
	wait_until 30 "ee and $n agree" digests_agree ee $n
done
[ "$(ctl ee quarantine --json | grep -c '"id"')" = 0 ] ||
    fail "restored ee quarantined: $(ctl ee quarantine --json)"
ok "restored ee holds all 8 services with the rename; verify agrees with lv and fi; nothing quarantined"

ctl ee put service ee:s7 name="Shelter 7" kind=shelter >/dev/null
for n in lv fi; do
	wait_until 30 "$n got ee's write after the restore" has_field $n service ee:s7 name "Shelter 7"
done
ok "a write of the restored ee reached lv and fi"

# on demand: verify --repair runs a reconciliation and prints the digest
out=$(ctl ee verify lv --repair) || fail "verify --repair: $out"
echo "$out" | grep -q "reconciled with lv" || fail "verify --repair said: $out"
d_ee=$(echo "$out" | tail -n 1 | cut -d' ' -f1)
d_lv=$(ctl lv verify ee | cut -d' ' -f1)
[ "$d_ee" = "$d_lv" ] || fail "after --repair: ee says $d_ee, lv says $d_lv"
ok "nbxctl verify lv --repair on ee: reconciled, digests equal"
