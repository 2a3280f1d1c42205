#!/usr/bin/env bash
# The same loadgen run against one node on SQLite, one node on PostgreSQL and three nodes on
# PostgreSQL (127.0.0.1-3), in turn, ROUNDS times, on this machine (every node, PostgreSQL and
# loadgen share its cores: this shows what the database costs, not how nodes scale). Prints
# each run's figures and the medians; the JSON reports go to target/cluster-bench/.
#
#   scripts/cluster-bench.sh                  (ROUNDS=3 BIDDERS=500 ITEMS=20 DURATION=10s)
set -euo pipefail
cd "$(dirname "$0")/.."

BIDDERS=${BIDDERS:-500}
ITEMS=${ITEMS:-20}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
OUT=target/cluster-bench
budgets=(--bid-rate 1000000 --bid-burst 1000000 --accounts-per-hour 1000000
  --max-handshakes-per-source 1024 --snipe-window 0s)

cargo build --release --quiet -p auction-server -p loadgen
server_bin=$PWD/target/release/auction-server
loadgen_bin=$PWD/target/release/loadgen
mkdir -p "$OUT"
rm -f "$OUT"/*.json

work=$(mktemp -d)
chmod 755 "$work"
pids=()
stop_nodes() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
  pids=()
}
cleanup() {
  stop_nodes
  bash scripts/postgres.sh stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

url=$(bash scripts/postgres.sh start "$work/pg" | tail -n 1)
"$server_bin" gen-certs --out "$work/certs" --san 127.0.0.1 --san 127.0.0.2 --san 127.0.0.3 >/dev/null

# start_node N DB [NAME]: a node on 127.0.0.N, its address appended to $servers.
start_node() {
  local n=$1 db=$2 log="$work/node$1.log"
  local args=(--udp "127.0.0.$n:0" --db "$db" --cert "$work/certs/server.pem"
    --key "$work/certs/server.key" "${budgets[@]}")
  if [ -n "${3:-}" ]; then args+=(--node "$3"); fi
  ("$server_bin" "${args[@]}" 2>"$log" & echo $! >"$work/pid")
  pids+=("$(cat "$work/pid")")
  local addr=""
  for _ in $(seq 1 150); do
    addr=$(sed -n 's/.*auction-server \(listening\|standing by\) udp=\([0-9.:]*\).*/\2/p' "$log" | head -1)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "node $n did not start:"; cat "$log"; exit 1; }
  servers="${servers:+$servers,}$addr"
}

reset_postgres() {
  psql -q "$url" -c "SET client_min_messages = warning; DROP SCHEMA public CASCADE; CREATE SCHEMA public;" >/dev/null
}

run() { # run SETUP ROUND
  local setup=$1 round=$2
  servers=""
  case "$setup" in
    sqlite) rm -f "$work"/auction.db*; start_node 1 "$work/auction.db" ;;
    postgres-1) reset_postgres; start_node 1 "$url" n1 ;;
    postgres-3) reset_postgres; start_node 1 "$url" n1; start_node 2 "$url" n2; start_node 3 "$url" n3 ;;
  esac
  local json="$OUT/$setup-$round.json" status=0
  "$loadgen_bin" --server "$servers" --ca "$work/certs/ca.pem" --bidders "$BIDDERS" \
    --items "$ITEMS" --duration "$DURATION" --verify --quiet --json "$json" >/dev/null || status=$?
  stop_nodes
  if [ "$status" -ne 0 ]; then echo "$setup round $round: loadgen exited with $status"; exit 1; fi
  python3 - "$json" "$setup" "$round" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
lat = r["latency_us"]["bid_round_trip"]
print(f"{sys.argv[2]:<12} round {sys.argv[3]}: {r['throughput']['answered_per_s']:>8.0f} answered/s "
      f"{r['throughput']['accepted_per_s']:>7.0f} accepted/s  p50 {lat['p50']/1000:.2f} ms  "
      f"p99 {lat['p99']/1000:.2f} ms  verify {r['verify']['passed']}")
EOF
}

echo "== $BIDDERS bidders, $ITEMS items, $DURATION, closed loop, $ROUNDS rounds; $(nproc) cores"
for round in $(seq 1 "$ROUNDS"); do
  for setup in sqlite postgres-1 postgres-3; do
    run "$setup" "$round"
  done
done
python3 - "$OUT" <<'EOF'
import json, glob, statistics, sys
print("== medians")
for setup in ["sqlite", "postgres-1", "postgres-3"]:
    runs = [json.load(open(f)) for f in sorted(glob.glob(f"{sys.argv[1]}/{setup}-*.json"))]
    answered = statistics.median(r["throughput"]["answered_per_s"] for r in runs)
    accepted = statistics.median(r["throughput"]["accepted_per_s"] for r in runs)
    p99 = statistics.median(r["latency_us"]["bid_round_trip"]["p99"] for r in runs) / 1000
    print(f"{setup:<12} {answered:>8.0f} answered/s {accepted:>7.0f} accepted/s  p99 {p99:.2f} ms")
EOF
