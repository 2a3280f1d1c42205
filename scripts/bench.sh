#!/usr/bin/env bash
# Benchmark: release binaries; for each round, a fresh server (free loopback ports, a new
# temporary database, metrics on) driven by `loadgen --verify`, then the TLS echo baseline with
# the same shape; finally the medians and the auction / baseline ratio (`loadgen summarize`), with
# every run's latency curves, answers per second and figures on one HTML page (bench.html) and
# the latency curves alone as bench-latency.svg.
#
# Exits non-zero when a run had errors or failed verification, never on a timing threshold:
# shared machines are too noisy for that. Settings (environment):
#   BIDDERS=500 ITEMS=20 DURATION=10s ROUNDS=1   the shape and how many rounds
#   LOADGEN_ARGS="--rate 20000"                  extra loadgen flags (open loop, --items-per-bidder 20, ...)
#   BENCH_OUT=target/bench                       where the JSON reports, .hgrm files and plots go
#   SERVER_ARGS=""                               extra auction-server flags (e.g. --no-group-commit)
set -euo pipefail
cd "$(dirname "$0")/.."

BIDDERS=${BIDDERS:-500}
ITEMS=${ITEMS:-20}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-1}
OUT=${BENCH_OUT:-target/bench}
read -r -a extra <<<"${LOADGEN_ARGS:-}"
read -r -a server_extra <<<"${SERVER_ARGS:-}"
# One host drives every bidder flat out: budgets meant for people (bids per account per
# second, accounts created per address) would measure the budget, not the server. They are
# raised here, and said so.
budgets=(--bid-rate 1000000 --bid-burst 1000000 --accounts-per-hour 1000000 --max-handshakes-per-source 1024)

cargo build --release --quiet -p auction-server -p loadgen
server_bin=target/release/auction-server
loadgen_bin=target/release/loadgen
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.hgrm "$OUT"/*.html "$OUT"/*.svg

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== machine: $(nproc) cores, $(uname -sr)"
echo "== shape: $BIDDERS bidders, $ITEMS items, $DURATION per run, $ROUNDS round(s) ${LOADGEN_ARGS:+(loadgen $LOADGEN_ARGS)}"
echo "== budgets raised for one host bidding flat out: ${budgets[*]}"
failed=0
reports=()
for round in $(seq 1 "$ROUNDS"); do
  run="$work/round$round"
  mkdir -p "$run"
  # No soft-close extension, so every auction ends when loadgen planned and --verify does not
  # wait for extensions.
  "$server_bin" --udp 127.0.0.1:0 --metrics 127.0.0.1:0 \
    --cert "$run/certs/server.pem" --key "$run/certs/server.key" --db "$run/auction.db" \
    --snipe-window 0s "${budgets[@]}" "${server_extra[@]}" 2>"$run/server.log" &
  server_pid=$!
  addr=""
  metrics=""
  for _ in $(seq 1 100); do
    addr=$(sed -n 's/.*auction-server listening udp=\([0-9.:]*\).*/\1/p' "$run/server.log" | head -1)
    metrics=$(sed -n 's/.*metrics at \(http:[^ ]*\).*/\1/p' "$run/server.log" | head -1)
    [ -n "$addr" ] && [ -n "$metrics" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "the server did not start:"; cat "$run/server.log"; exit 1; }

  echo
  echo "== round $round: auction (server $addr, $metrics)"
  status=0
  "$loadgen_bin" --server "$addr" --ca "$run/certs/ca.pem" \
    --bidders "$BIDDERS" --items "$ITEMS" --duration "$DURATION" --verify --quiet \
    --metrics-url "$metrics" --json "$OUT/auction-$round.json" --hgrm "$OUT/auction-$round.hgrm" \
    "${extra[@]}" || status=$?
  if [ "$status" -ne 0 ]; then
    echo "loadgen exited with $status"
    failed=1
  fi
  kill -TERM "$server_pid"
  if ! wait "$server_pid"; then
    echo "the server did not stop cleanly:"
    tail -20 "$run/server.log"
    failed=1
  fi
  server_pid=""
  [ -f "$OUT/auction-$round.json" ] && reports+=("$OUT/auction-$round.json")

  echo
  echo "== round $round: baseline (TLS echo server, a loadgen child process; same connections and line sizes)"
  status=0
  baseline_args=(--bidders "$BIDDERS" --items "$ITEMS" --duration "$DURATION" --quiet
    --json "$OUT/baseline-$round.json")
  # The baseline takes the connection layout flag too.
  for ((i = 0; i < ${#extra[@]}; i++)); do
    if [ "${extra[$i]}" = "--items-per-bidder" ]; then
      baseline_args+=(--items-per-bidder "${extra[$((i + 1))]}")
    fi
  done
  "$loadgen_bin" baseline "${baseline_args[@]}" || status=$?
  if [ "$status" -ne 0 ]; then
    echo "loadgen baseline exited with $status"
    failed=1
  fi
  [ -f "$OUT/baseline-$round.json" ] && reports+=("$OUT/baseline-$round.json")
done

echo
echo "== summary (reports in $OUT)"
"$loadgen_bin" summarize "${reports[@]}" --html "$OUT/bench.html" --svg "$OUT/bench-latency.svg" || failed=1
echo "plots: $OUT/bench.html, $OUT/bench-latency.svg"
exit "$failed"
