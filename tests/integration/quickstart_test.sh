#!/bin/sh
# The README's "Try two nodes by hand", step by step with the same commands
# (ports moved to this test's range, the programs taken from the build):
# a newcomer can create a CA, bring up two nodes, peer them by host name,
# import a JSONL file and query the other node with nbxctl and nbxq only.
. "$(dirname "$0")/lib.sh"

PATH=$BIN:$PATH
P1=$((PORT_BASE + 1)); P2=$((PORT_BASE + 2))
cd "$T"
mkdir nbx-try && cd nbx-try
nbxctl ca init --dir ca >/dev/null
nbxctl ca issue --dir ca --node ee --out ee >/dev/null
nbxctl ca issue --dir ca --node lv --out lv >/dev/null
for n in ee:$P1 lv:$P2; do id=${n%:*}; port=${n#*:}
  cat > $id/nbx.conf <<EOF
[node]
id = $id
data_dir = data
listen = 127.0.0.1:$port
schema = $REPO/conf/schema.conf
[tls]
ca = ca.crt
cert = node.crt
key = node.key
EOF
done
nbxd -c ee/nbx.conf 2>ee/log &
echo "ee $!" >>"$PIDS_FILE"
nbxd -c lv/nbx.conf 2>lv/log &
echo "lv $!" >>"$PIDS_FILE"
wait_until 10 "both daemons answer" sh -c "nbxctl -c ee/nbx.conf status && nbxctl -c lv/nbx.conf status"
nbxctl -c ee/nbx.conf peer add lv localhost:$P2 >/dev/null
nbxctl -c lv/nbx.conf peer add ee localhost:$P1 >/dev/null
cat > services.jsonl <<EOF
{"collection":"service","id":"ee:shelter-1","fields":{"name":"Tallinn shelter","kind":"shelter","capacity":12,"languages":["et","ru"]}}
{"collection":"service","id":"ee:helpline","fields":{"name":"Victim helpline","kind":"helpline","open_24h":true}}
EOF
nbxctl -c ee/nbx.conf import services.jsonl | grep -q "read 2, applied 2" || fail "import"
wait_until 15 "lv lists ee's services" sh -c "nbxq -c lv/nbx.conf count service | grep -qx 2"
nbxq -c lv/nbx.conf list service --fields name,kind,capacity >out.txt
printf '%s\n' "ID            NAME             KIND      CAPACITY" \
    "ee:helpline   Victim helpline  helpline  " \
    "ee:shelter-1  Tallinn shelter  shelter   12" >want.txt
cmp -s out.txt want.txt || { diff want.txt out.txt; fail "lv's listing"; }
nbxctl -c ee/nbx.conf status | grep -q "^lv  *up" || fail "status does not show lv up"
ok "README quick start: CA, two nodes peered by host name, import on ee, query on lv"
