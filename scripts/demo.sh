#!/usr/bin/env bash
# Runs a whole auction on loopback with short durations and prints what happened:
# a server on free ports with fresh certificates in a temporary folder, three people
# (alice sells, bob and carol bid), the winner and seller notices, the final status, and
# what the live board shows.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet --bins
server_bin=target/debug/auction-server
client_bin=target/debug/auction-client

work=$(mktemp -d)
server_pid=""
watch_pids=()
cleanup() {
  for p in "${watch_pids[@]}" $server_pid; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The operator's key (made in its home; whoami asks no server), which the server is given.
operator_key=$("$client_bin" --home "$work/homes/operator" whoami --key)

# Port 0: the server picks a free port and logs it.
"$server_bin" --udp 127.0.0.1:0 --web 127.0.0.1:0 \
  --cert "$work/certs/server.pem" --key "$work/certs/server.key" --db "$work/auction.db" \
  --snipe-window 2s --snipe-extension 3s --operator-key "$operator_key" 2>"$work/server.log" &
server_pid=$!
addr=""
for _ in $(seq 1 100); do
  addr=$(sed -n 's/.*auction-server listening udp=\([0-9.:]*\).*/\1/p' "$work/server.log" | head -1)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "the server did not start:"; cat "$work/server.log"; exit 1; }
web=$(sed -n 's|.*live board at http://\([0-9.:]*\)/.*|\1|p' "$work/server.log" | head -1)
echo "== server listening on $addr (certificates in $work/certs); live board at http://$web/"

# GET a page of the board (bash's /dev/tcp: no HTTP client needed).
board() {
  exec 3<>"/dev/tcp/${web%:*}/${web##*:}"
  printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$1" "$web" >&3
  cat <&3
  exec 3<&-
}
# The text of the board's table rows, one per line.
board_rows() {
  board "$1" | sed 's|<tr|\n<tr|g; s|</tr>|</tr>\n|g' | grep '^<tr data-' |
    sed 's|<[^>]*>| |g; s|  *| |g; s|^ ||'
}

client() {
  local who=$1; shift
  "$client_bin" --server "$addr" --ca "$work/certs/ca.pem" --home "$work/homes/$who" "$@"
}
# Started from here rather than through `client ... &`: that would put the client in a
# subshell whose pid cleanup kills while the client itself runs on (and retries for ever).
watch_in_background() {
  "$client_bin" --server "$addr" --ca "$work/certs/ca.pem" --home "$work/homes/$1" watch \
    >"$2" 2>&1 &
  watch_pids+=($!)
}
say() { printf '\n== %s\n' "$*"; }

say "three people register (each client makes its key pair on first use)"
client alice register alice
client bob register bob
client carol register carol

say "alice and carol watch for announcements"
watch_in_background alice "$work/alice.txt"
watch_in_background carol "$work/carol.txt"
sleep 0.5

say "alice offers a lamp for at least 12.50, bidding open for 4 seconds"
item=$(client alice --json offer "Vintage lamp" --min 12.50 --duration 4s | sed -n 's/.*"item":\([0-9]*\).*/\1/p')
client alice status "$item"

say "the open items"
client bob items

say "bob bids too little (exit code 1), then the minimum"
client bob bid "$item" 12.00 || echo "(exit code $?)"
client bob bid "$item" 12.50

say "carol outbids him"
client carol bid "$item" 13.75

say "the live board, as a browser at http://$web/ gets it (item, description, seller, minimum, price, terms, leader, bids, time left)"
board_rows /

say "bob bids again and follows the channel to the end (a late bid extends the auction)"
client bob bid "$item" 15 --follow

say "the result, asked after the close"
client carol status "$item"
client carol --json status "$item"

sleep 1
say "what alice's watch printed"
cat "$work/alice.txt"
say "what carol's watch printed"
cat "$work/carol.txt"

say "the live board's results, and the item's page (its bids in order)"
board_rows / | tee "$work/board.txt"
board_rows "/item/$item"

grep -q "sold to bob for 15.00" "$work/alice.txt" || { echo "alice never heard of the sale"; exit 1; }
grep -q "sold to bob for 15.00" "$work/board.txt" || { echo "the board does not show the sale"; exit 1; }

say "the operator: mallory bids for alice to push the price (shill bidding)"
client operator register operator
client mallory register mallory
guitar=$(client alice --json offer "Guitar" --min 50 --duration 1m | sed -n 's/.*"item":\([0-9]*\).*/\1/p')
client bob bid "$guitar" --max 120
client mallory bid "$guitar" 110
client carol status "$guitar"
client operator history "$guitar"
shill=$(client operator --json history "$guitar" | grep '"bidder":"mallory"' | sed -n 's/.*"bid":\([0-9]*\).*/\1/p')

say "the operator removes mallory's bid: bob's proxy no longer has it to answer"
client operator remove-bid "$guitar" "$shill" --note "shill bidding for the seller" | tee "$work/removed.txt"
client carol history "$guitar"

say "and cancels the item, which closes unsold"
client operator cancel-item "$guitar" --note "the seller bid on her own item"
client carol status "$guitar" | tee "$work/cancelled.txt"

say "the item's audit log, read from the database"
"$server_bin" audit "$guitar" --db "$work/auction.db" | tee "$work/audit.txt"

grep -q "the highest bid is now 50.00 by bob" "$work/removed.txt" || { echo "the removal did not fall back"; exit 1; }
grep -q "was cancelled by the operator: not sold" "$work/cancelled.txt" || { echo "the cancelled item is not shown cancelled, unsold"; exit 1; }
grep -q "remove-bid #$shill *by operator: shill bidding" "$work/audit.txt" || { echo "the audit log lacks the removal"; exit 1; }
say "done"
