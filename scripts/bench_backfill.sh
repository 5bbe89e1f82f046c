#!/usr/bin/env bash
# Backfill benchmark: a dev node with 20,000 blocks of ERC-20 transfers already published, a host
# with one subscription (Transfer topic0, erc20-transfers dropping everything), from start_block 1.
set -u
# Needs the debug binary and the release plugins (scripts/test.sh builds both). Env: RATE (logs/s of
# the dev node; 5000 = 5 logs per block), PIPELINE_INGEST_MAX_RANGE_BLOCKS (1: about block by
# block), DB (a PostgreSQL URL; default SQLite in a temp dir). Uses ports 18546, 18080, 19090.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN=$TARGET/debug/pipeline
D=$(mktemp -d)
RATE=${RATE:-5000}
$BIN dev-node --listen 127.0.0.1:18546 --chain-id 1 --source transfers --tokens 10 --rate $RATE --block-ms 1 --blocks 20000 --seed 7 > $D/node.log 2>&1 &
NODE=$!
echo $NODE > $D/node.pid
export DATABASE_URL=${DB:-sqlite://$D/data/p.db} PIPELINE_ADMIN_ADDR=127.0.0.1:18080 PIPELINE_METRICS_ADDR=127.0.0.1:19090 \
  PIPELINE_ADMIN_TOKEN=bench PIPELINE_DATA_DIR=$D/data PIPELINE_DELIVERY_ALLOWED_CIDRS=127.0.0.0/8
# 1: no chain, to set up the subscription before anything is ingested.
echo "" > $D/empty.toml
$BIN serve --config $D/empty.toml > $D/host1.log 2>&1 &
H=$!
for i in $(seq 1 100); do curl -sf http://127.0.0.1:18080/healthz >/dev/null && break; sleep 0.2; done
A="Authorization: Bearer bench"
PLUGIN=$(curl -sS -X POST -H "$A" --data-binary @$TARGET/wasm32-unknown-unknown/release/erc20_transfers.wasm "http://127.0.0.1:18080/v1/plugins?name=erc20" | python3 -c 'import sys,json; print(json.load(sys.stdin)["id"])')
EP=$(curl -sS -X POST -H "$A" -H 'content-type: application/json' -d '{"url":"http://127.0.0.1:9/hook"}' http://127.0.0.1:18080/v1/endpoints | python3 -c 'import sys,json; print(json.load(sys.stdin)["id"])')
curl -sS -X POST -H "$A" -H 'content-type: application/json' -d "{\"endpoint_id\":\"$EP\",\"chain_id\":1,\"topics\":[[\"0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef\"]],\"plugin_id\":\"$PLUGIN\",\"plugin_config\":{\"min_value\":\"100000000000000000000000000000000000000\"}}" http://127.0.0.1:18080/v1/subscriptions > $D/sub.json
kill $H; wait $H
# Wait for the node to have published its 20,000 blocks.
for i in $(seq 1 600); do grep -q "published 20000 blocks" $D/node.log && break; sleep 0.2; done
printf '[[chains]]\nname = "dev"\nchain_id = 1\nws_urls = ["ws://127.0.0.1:18546"]\nstart_block = 1\n' > $D/chain.toml
$BIN serve --config $D/chain.toml > $D/host2.log 2>&1 &
H=$!
START=$(date +%s.%N)
while true; do
  M=$(curl -sf http://127.0.0.1:19090/metrics || true)
  R=$(echo "$M" | grep '^pipeline_backfill_blocks_total{chain="dev"}' | awk '{print $2}')
  E=$(echo "$M" | grep '^pipeline_events_received_total{chain="dev"}' | awk '{print $2}')
  P=$(echo "$M" | grep '^pipeline_events_processed_total' | awk '{s+=$2} END {print s}')
  NOW=$(date +%s.%N)
  echo "t=$(echo "$NOW - $START" | bc) ranges_blocks=${R:-0} events_received=${E:-0} processed=${P:-0}"
  if [ "${R:-0}" != "0" ] && [ "$(echo "${R:-0} >= 19936" | bc)" = 1 ] && [ "${P:-0}" != "" ] && [ "$(echo "${P:-0} >= ${E:-0}" | bc)" = 1 ]; then break; fi
  if [ "$(echo "$NOW - $START > 300" | bc)" = 1 ]; then echo TIMEOUT; break; fi
  sleep 0.5
done
kill $H; wait $H
kill $NODE; wait $NODE 2>/dev/null
grep -m3 "catching up" $D/host2.log
rm -rf "$D"
