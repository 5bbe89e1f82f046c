#!/usr/bin/env bash
# Database size over time under a steady load, with a short retention period (issue 8).
#
#   scripts/bench_retention.sh                    # SQLite, 10 minutes
#   DB=postgres://postgres@127.0.0.1:5432/test scripts/bench_retention.sh   # a fresh database on that server
#
# The release host follows `pipeline dev-node --source transfers` at RATE events/s (default 1000) and
# delivers every Transfer (one subscription, no plugin) to `pipeline listen`, which verifies each
# signature. Retention keeps delivered/dead deliveries and parked events RETENTION (default 60s),
# pruned every INTERVAL (10s). Every SAMPLE_S (30 s) for MINUTES (10) it records the database size
# (SQLite: the file plus its -wal and -shm; PostgreSQL: pg_database_size) and the row counts of
# deliveries, delivery_attempts, parked_events and chain_blocks; it prints a table and writes
# target/bench/retention-{sqlite,postgres}.json. PORT_BASE (default 28000) spaces the ports so two
# runs (SQLite and PostgreSQL) can go at once. Needs the release binary:
#   cargo build --release -p pipeline-host --bin pipeline
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${PIPELINE_BIN:-$TARGET/release/pipeline}"
[[ -x "$BIN" ]] || { echo "no release binary at $BIN: cargo build --release -p pipeline-host --bin pipeline" >&2; exit 1; }
RATE=${RATE:-1000}
MINUTES=${MINUTES:-10}
SAMPLE_S=${SAMPLE_S:-30}
RETENTION=${RETENTION:-60s}
INTERVAL=${INTERVAL:-10s}
PORT_BASE=${PORT_BASE:-28000}
NODE_PORT=$((PORT_BASE + 546)) ADMIN_PORT=$((PORT_BASE + 80)) METRICS_PORT=$((PORT_BASE + 90)) SINK_PORT=$((PORT_BASE + 900))
D=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    [[ -n "${PG_DB:-}" ]] && psql -w "$PG_SERVER/postgres" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1
    rm -rf "$D"
}
trap cleanup EXIT

if [[ -n "${DB:-}" ]]; then
    STORE=postgres
    PG_SERVER="${DB%/*}"
    PG_DB="pipeline_bench_retention_$$"
    psql -w -v ON_ERROR_STOP=1 "$PG_SERVER/postgres" -qc "CREATE DATABASE $PG_DB" >/dev/null
    DATABASE_URL="$PG_SERVER/$PG_DB"
else
    STORE=sqlite
    mkdir -p "$D/data"
    DATABASE_URL="sqlite://$D/data/pipeline.db"
fi
OUT_DIR="$ROOT/target/bench"
mkdir -p "$OUT_DIR"
OUT="$OUT_DIR/retention-$STORE.json"

SECRET="whsec_$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
"$BIN" dev-node --listen "127.0.0.1:$NODE_PORT" --chain-id 1 --source transfers --tokens 10 \
    --rate "$RATE" --block-ms 100 > "$D/node.log" 2>&1 &
PIDS+=($!)
"$BIN" listen --port "$SINK_PORT" --secret "$SECRET" > /dev/null 2> "$D/sink.log" &
PIDS+=($!)
printf '[[chains]]\nname = "dev"\nchain_id = 1\nws_urls = ["ws://127.0.0.1:%s"]\n' "$NODE_PORT" > "$D/pipeline.toml"
DATABASE_URL="$DATABASE_URL" PIPELINE_ADMIN_ADDR="127.0.0.1:$ADMIN_PORT" PIPELINE_METRICS_ADDR="127.0.0.1:$METRICS_PORT" \
PIPELINE_ADMIN_TOKEN=bench PIPELINE_DATA_DIR="$D/data" PIPELINE_DELIVERY_ALLOWED_CIDRS=127.0.0.0/8 \
PIPELINE_RETENTION_DELIVERED="$RETENTION" PIPELINE_RETENTION_DEAD="$RETENTION" PIPELINE_RETENTION_PARKED="$RETENTION" \
PIPELINE_RETENTION_INTERVAL="$INTERVAL" RUST_LOG=warn \
    "$BIN" serve --config "$D/pipeline.toml" > "$D/host.log" 2>&1 &
PIDS+=($!)
API="http://127.0.0.1:$ADMIN_PORT"
for _ in $(seq 1 150); do curl -sf "$API/healthz" >/dev/null && break; sleep 0.2; done
A="Authorization: Bearer bench"
EP=$(curl -sS -X POST -H "$A" -H 'content-type: application/json' \
    -d "{\"url\":\"http://127.0.0.1:$SINK_PORT/hook\",\"secret\":\"$SECRET\"}" "$API/v1/endpoints" |
    python3 -c 'import sys,json; print(json.load(sys.stdin)["id"])')
curl -sS -X POST -H "$A" -H 'content-type: application/json' -o /dev/null \
    -d "{\"endpoint_id\":\"$EP\",\"chain_id\":1,\"topics\":[[\"0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef\"]]}" \
    "$API/v1/subscriptions"

metric() { # sum of a metric's samples whose line starts with $1
    { curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" || true; } | awk -v p="$1" 'index($0, p) == 1 {s += $NF} END {printf "%d", s}'
}
sample() { # one JSON object: t, size, row counts, deliveries delivered so far
    local t="$1" size counts wal=0
    if [[ "$STORE" == sqlite ]]; then
        local f="$D/data/pipeline.db"
        wal=$(( $(stat -c %s "$f-wal" 2>/dev/null || echo 0) + $(stat -c %s "$f-shm" 2>/dev/null || echo 0) ))
        size=$(( $(stat -c %s "$f") + wal ))
        counts=$(sqlite3 -readonly "$f" "PRAGMA busy_timeout=5000;" \
            "SELECT (SELECT count(*) FROM deliveries) || ' ' || (SELECT count(*) FROM delivery_attempts) || ' ' || (SELECT count(*) FROM parked_events) || ' ' || (SELECT count(*) FROM chain_blocks);" | tail -n1)
    else
        size=$(psql -w "$DATABASE_URL" -tAc "SELECT pg_database_size(current_database())")
        counts=$(psql -w "$DATABASE_URL" -tAc "SELECT (SELECT count(*) FROM deliveries) || ' ' || (SELECT count(*) FROM delivery_attempts) || ' ' || (SELECT count(*) FROM parked_events) || ' ' || (SELECT count(*) FROM chain_blocks)")
    fi
    read -r deliveries attempts parked blocks <<< "$counts"
    printf '{"t_s":%d,"db_bytes":%d,"wal_bytes":%d,"deliveries":%d,"delivery_attempts":%d,"parked_events":%d,"chain_blocks":%d,"events_received":%s,"delivered":%s,"pruned":%s}\n' \
        "$t" "$size" "$wal" "$deliveries" "$attempts" "$parked" "$blocks" \
        "$(metric 'pipeline_events_received_total{chain="dev"}')" \
        "$(metric 'pipeline_deliveries_attempted_total{status="success"}')" \
        "$(metric 'pipeline_pruned_rows_total')"
}

echo "retention bench: $STORE, $RATE events/s for $MINUTES min, retention $RETENTION every $INTERVAL, sample every ${SAMPLE_S}s"
START=$(date +%s)
: > "$D/samples.jsonl"
for ((t = 0; t <= MINUTES * 60; t += SAMPLE_S)); do
    wait_s=$(( START + t - $(date +%s) ))
    (( wait_s > 0 )) && sleep "$wait_s"
    sample "$t" >> "$D/samples.jsonl"
    tail -n1 "$D/samples.jsonl"
done

python3 - "$D/samples.jsonl" "$OUT" "$STORE" "$RATE" "$RETENTION" "$INTERVAL" <<'PYEOF'
import json, sys
path, out, store, rate, retention, interval = sys.argv[1:]
samples = [json.loads(l) for l in open(path)]
json.dump({"store": store, "rate_events_per_s": float(rate), "retention": retention,
           "interval": interval, "samples": samples}, open(out, "w"), indent=1)
print(f"\n| t | DB size (of it WAL) | deliveries | delivery_attempts | parked_events | chain_blocks | events received | webhooks delivered | rows pruned |")
print("|---|---|---|---|---|---|---|---|---|")
for s in samples:
    wal = f" ({s['wal_bytes'] / 2**20:.1f})" if store == "sqlite" else ""
    print(f"| {s['t_s'] // 60}:{s['t_s'] % 60:02d} | {s['db_bytes'] / 2**20:.1f} MiB{wal} | {s['deliveries']:,} | {s['delivery_attempts']:,} | "
          f"{s['parked_events']:,} | {s['chain_blocks']:,} | {s['events_received']:,} | {s['delivered']:,} | {s['pruned']:,} |")
print(f"\nwritten to {out}")
PYEOF
