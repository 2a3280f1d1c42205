# Shared by scripts/bench.sh and scripts/knee.sh (sourced, not run): release binaries, a fresh
# auction server per run (free loopback ports, a new database, metrics on), its clean stop,
# and the budgets one host bidding flat out needs raised. The caller sets `set -euo pipefail`
# and works from the repository's root.

# One host drives every bidder flat out: budgets meant for people (bids per account per
# second, accounts created per address) would measure the budget, not the server. They are
# raised here, and said so.
budgets=(--bid-rate 1000000 --bid-burst 1000000 --accounts-per-hour 1000000 --max-handshakes-per-source 1024)
read -r -a server_extra <<<"${SERVER_ARGS:-}"

# Builds the release binaries; sets server_bin and loadgen_bin (in $CARGO_TARGET_DIR if set).
bench_build() {
  cargo build --release --quiet -p auction-server -p loadgen
  local target=${CARGO_TARGET_DIR:-target}
  server_bin=$target/release/auction-server
  loadgen_bin=$target/release/loadgen
}

# A temporary folder for the servers' certificates, databases and logs ($work), removed on
# exit with any server still running.
work=$(mktemp -d)
server_pid=""
bench_cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap bench_cleanup EXIT

# start_server DIR: a fresh server with its certificates, database and log in DIR; sets
# server_pid, addr (UDP) and metrics (URL). No soft-close extension, so every auction ends
# when loadgen planned and --verify does not wait for extensions.
start_server() {
  local dir=$1
  mkdir -p "$dir"
  "$server_bin" --udp 127.0.0.1:0 --metrics 127.0.0.1:0 \
    --cert "$dir/certs/server.pem" --key "$dir/certs/server.key" --db "$dir/auction.db" \
    --snipe-window 0s "${budgets[@]}" "${server_extra[@]}" 2>"$dir/server.log" &
  server_pid=$!
  addr=""
  metrics=""
  for _ in $(seq 1 100); do
    addr=$(sed -n 's/.*auction-server listening udp=\([0-9.:]*\).*/\1/p' "$dir/server.log" | head -1)
    metrics=$(sed -n 's/.*metrics at \(http:[^ ]*\).*/\1/p' "$dir/server.log" | head -1)
    [ -n "$addr" ] && [ -n "$metrics" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "the server did not start:"; cat "$dir/server.log"; exit 1; }
}

# stop_server DIR: stops the server started in DIR; fails (after showing its log's end) when
# it does not stop cleanly.
stop_server() {
  local dir=$1 status=0
  kill -TERM "$server_pid"
  wait "$server_pid" || status=$?
  server_pid=""
  if [ "$status" -ne 0 ]; then
    echo "the server did not stop cleanly:"
    tail -20 "$dir/server.log"
    return 1
  fi
}
