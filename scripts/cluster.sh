#!/usr/bin/env bash
# Three auction-server nodes sharing one throwaway PostgreSQL, on 127.0.0.1, .2 and .3 (all
# loopback): an auction, its node killed with SIGKILL in the middle of the bidding, and the
# bidding going on through another node. Prints what happens and how long the failover took,
# then stops everything and removes its files.
#
#   scripts/cluster.sh            (builds the debug binaries first)
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet --bins
server_bin=$PWD/target/debug/auction-server
client_bin=$PWD/target/debug/auction-client

work=$(mktemp -d)
chmod 755 "$work" # the PostgreSQL cluster runs as `postgres` when this runs as root
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
  bash scripts/postgres.sh stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
say() { printf '\n== %s\n' "$*"; }

say "a throwaway PostgreSQL (scripts/postgres.sh)"
url=$(bash scripts/postgres.sh start "$work/pg" | tail -n 1)
echo "$url"

say "one certificate for the three nodes' addresses"
"$server_bin" gen-certs --out "$work/certs" --san localhost --san 127.0.0.1 --san 127.0.0.2 --san 127.0.0.3

# Node N listens on 127.0.0.N:7400 (a free port on each address: 7400 unless taken).
port=7400
start_node() {
  local n=$1
  # In a subshell, so the shell does not report the kill below as a job's death.
  ("$server_bin" --db "$url" --node "node$n" --udp "127.0.0.$n:$port" \
    --cert "$work/certs/server.pem" --key "$work/certs/server.key" \
    --recovery-grace 20s --snipe-window 0s \
    2>"$work/node$n.log" &
    echo $! >"$work/node$n.pid")
  local pid
  pid=$(cat "$work/node$n.pid")
  pids+=("$pid")
  eval "node${n}_pid=$pid"
  for _ in $(seq 1 100); do
    grep -qE "auction-server (listening|standing by)" "$work/node$n.log" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "node$n did not start:"; cat "$work/node$n.log"; exit 1
}
say "three nodes: the first to start leads, the others stand by"
start_node 1
start_node 2
start_node 3
grep -h -o "auction-server \(listening\|standing by\).*" "$work"/node*.log | cut -c1-110

servers="127.0.0.1:$port,127.0.0.2:$port,127.0.0.3:$port"
client() {
  local who=$1; shift
  "$client_bin" --server "$servers" --ca "$work/certs/ca.pem" --home "$work/homes/$who" "$@"
}

say "alice and bob register (through whichever node leads), alice offers a clock for 60 s"
client alice register alice
client bob register bob
item=$(client alice --json offer "Grandfather clock" --min 100 --duration 60s | sed -n 's/.*"item":\([0-9]*\).*/\1/p')
client bob status "$item"

say "bob bids 120.00"
client bob bid "$item" 120.00

read -r leader owner < <("$server_bin" status --json --db "$url" | python3 -c '
import json, sys
r = json.load(sys.stdin)
leader = [n["name"] for n in r["nodes"] if n["leader"]][0]
owner = [i["owner"] for i in r["open_items"] if i["item"] == '"$item"'][0]
print(leader, owner)')
if [ "$owner" = "$leader" ]; then
  say "$owner leads and runs item $item: kill -9 it"
else
  say "$leader leads; $owner runs item $item: kill -9 $owner"
fi
pid=$(eval "echo \$${owner}_pid")
kill -9 "$pid"
killed=$(date +%s%N)

say "bob bids 150.00 right away: his client finds the item's new channel (and the new leader, if it moved)"
client bob bid "$item" 150.00
done_at=$(date +%s%N)
echo "accepted $(( (done_at - killed) / 1000000 )) ms after the kill"

say "the operator's view (auction-server status --db $url)"
"$server_bin" status --db "$url" | sed -n '1,12p'
