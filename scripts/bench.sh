#!/usr/bin/env bash
# Whole-process load benchmarks of the `pipeline` binary (the `dist` build: release + LTO, what the
# Dockerfile ships), one command from a clean
# checkout:   scripts/bench.sh [quick|modes|floor]   (modes: only the delivery-mode scenarios; floor:
# only the floor under the 1K latency goal, below)
#
# For each scenario the harness (host/benches/load.rs, a separate process from the host) runs the dev
# node publishing recorded ERC-20 transfers over WebSocket at a fixed rate, and a webhook sink on the
# same clock; it writes one JSON report per scenario. This script runs the scenarios on SQLite and
# PostgreSQL, measures the sink's own ceiling with wrk, and writes target/bench/report.json and
# target/bench/latency.png (latency percentiles against offered load). CI does not run it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/target/bench"
RUNS="$OUT/scenarios"   # this run's reports only
rm -rf "$RUNS"
mkdir -p "$RUNS"
PG_URL="${PIPELINE_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
SECONDS_PER_RUN="${PIPELINE_BENCH_SECONDS:-10}"

# Tools and PostgreSQL as the test command sets them up (wasm target, venv, PostgreSQL).
PIPELINE_SETUP_ONLY=1 bash scripts/test.sh >/dev/null
PY="$ROOT/.tools/venv/bin/python"
"$PY" -c "import matplotlib" 2>/dev/null || "$PY" -m pip install --quiet --disable-pip-version-check "matplotlib==3.9.2"
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }

cargo build --release --target wasm32-unknown-unknown -p erc20-transfers
cargo bench --no-run -p pipeline-host --bench load
# The host under test is the shipped build (Cargo.toml, `[profile.dist]`); the harness is only the
# other process. PIPELINE_LOAD_BIN set by the caller wins (A/B runs of another build).
cargo build --profile dist -p pipeline-host --bin pipeline
export PIPELINE_LOAD_BIN="${PIPELINE_LOAD_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/dist/pipeline}"

fresh_pg() { # a new, empty database per PostgreSQL run
    local db="pipeline_bench_${1//-/_}"
    psql -w -v ON_ERROR_STOP=1 "${PG_URL%/*}/postgres" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
    echo "${PG_URL%/*}/$db"
}

run() { # label store rate subscriptions plugin_share [tokens]
    local label="$1" store="$2" rate="$3" subs="$4" share="$5" tokens="${6:-$4}"
    local db=""
    [[ "$store" == postgres ]] && db="$(fresh_pg "$label")"
    echo "==> $label: $store, $rate events/s, $subs subscriptions over $tokens tokens, plugin share $share"
    PIPELINE_LOAD_LABEL="$label" PIPELINE_LOAD_RATE="$rate" PIPELINE_LOAD_SUBSCRIPTIONS="$subs" \
    PIPELINE_LOAD_TOKENS="$tokens" PIPELINE_LOAD_PLUGIN_SHARE="$share" PIPELINE_LOAD_SECONDS="$SECONDS_PER_RUN" \
    PIPELINE_LOAD_DATABASE_URL="$db" PIPELINE_LOAD_OUT="$RUNS/$label.json" \
        cargo bench --quiet -p pipeline-host --bench load >/dev/null
    "$PY" - "$RUNS/$label.json" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"    {r['webhooks_per_s_while_running']:.0f} events/s delivered while running ({r['webhook_requests']} requests), "
      f"p50 {r['latency_ms']['p50']:.1f} ms, p99 {r['latency_ms']['p99']:.1f} ms, drained after {r['backlog_drained_after_s']} s, "
      f"RSS peak {r['host_rss_mb']['peak']:.0f} MB, exactly once: {r['exactly_once']}, "
      f"statements/100 events {r['db_statements_per_100_events']:.2f}")
PYEOF
}

for store in sqlite postgres; do
    [[ "${1:-}" == modes || "${1:-}" == floor ]] && break
    [[ "$store" == sqlite ]] && unset PIPELINE_LOAD_DATABASE_URL
    run "latency-1k-$store" "$store" 1000 100 0
    # The same with `[delivery] send_before_commit`: webhooks go out while the batch is written.
    PIPELINE_DELIVERY_SEND_BEFORE_COMMIT=true run "latency-1k-send-before-commit-$store" "$store" 1000 100 0
    run "throughput-10k-$store" "$store" 10000 100 0.5
    [[ "${1:-}" == quick ]] && continue
    run "throughput-5k-$store" "$store" 5000 100 0.5
    run "throughput-20k-$store" "$store" 20000 100 0
    run "matching-100k-1pct-$store" "$store" 100000 1 0 100
done
if [[ "${1:-}" == "" ]]; then
    # Cost growth at 1K events/s: subscriptions (100 is latency-1k above), then endpoints.
    for subs in 10 1000 10000; do run "subscriptions-$subs-sqlite" sqlite 1000 "$subs" 0; done
    for endpoints in 10 100; do
        PIPELINE_LOAD_ENDPOINTS="$endpoints" run "endpoints-$endpoints-sqlite" sqlite 1000 100 0
    done
fi
# Delivery modes (issue 12) beside per-event delivery, to one fast endpoint: one subscription taking
# every event, batched by count or per block; ordered delivery (one in flight per key) at a rate its
# keys can follow, 10 subscriptions of one key each.
modes() { # store
    local store="$1"
    run "modes-20k-per-event-$store" "$store" 20000 1 0 1
    PIPELINE_LOAD_BATCH='{"max_events":100,"max_wait_ms":100}' run "modes-20k-batch-100-$store" "$store" 20000 1 0 1
    PIPELINE_LOAD_BATCH='"block"' run "modes-20k-batch-block-$store" "$store" 20000 1 0 1
    run "modes-200-per-event-$store" "$store" 200 10 0 10
    PIPELINE_LOAD_ORDERING=chain run "modes-200-ordered-$store" "$store" 200 10 0 10
}
if [[ "${1:-}" == modes || "${1:-}" == "" ]]; then
    for store in sqlite postgres; do modes "$store"; done
    PIPELINE_LOAD_BATCH='{"max_events":1000,"max_wait_ms":100}' run "modes-100k-batch-1000-sqlite" sqlite 100000 1 0 1
fi

# The floor under the 1K latency goal: the parts of a webhook's wait that are not the host's own
# code, each measured alone (BENCHMARKS.md, "Session of 2026-12-06 (seventeenth)"): the node's
# `eth_getLogs` answer once a head is read, a block's store write on each store, and a block's 100
# POSTs to the sink (raw sockets, a hyper connection, the host's client). One JSON line each.
if [[ "${1:-}" == floor || "${1:-}" == "" ]]; then
    cargo build --release -p pipeline-host --example node_floor --example write_cost --example fanout_floor
    EXAMPLES="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples"
    FLOOR="$OUT/floor"
    rm -rf "$FLOOR" && mkdir -p "$FLOOR"
    echo "==> floor: the node's answer"
    "$PIPELINE_LOAD_BIN" dev-node --listen 127.0.0.1:18546 --source transfers --rate 1000 >/dev/null 2>&1 &
    NODE_PID=$!
    trap 'kill "$NODE_PID" 2>/dev/null || true' EXIT   # the node runs until stopped
    sleep 1
    URL=ws://127.0.0.1:18546 HEADS=100 timeout 120 "$EXAMPLES/node_floor" | tee "$FLOOR/node.json"
    kill "$NODE_PID" 2>/dev/null || true
    trap - EXIT
    echo "==> floor: a block's write, SQLite and PostgreSQL"
    (cd "$FLOOR" && N=100 timeout 300 "$EXAMPLES/write_cost" | tee "$FLOOR/write-sqlite.txt")
    DATABASE_URL="$(fresh_pg write-cost)" N=100 timeout 300 "$EXAMPLES/write_cost" | tee "$FLOOR/write-postgres.txt"
    echo "==> floor: a block's 100 POSTs to the sink"
    PIPELINE_LOAD_SINK_ONLY=18998 cargo bench --quiet -p pipeline-host --bench load >/dev/null &
    SINK_PID=$!
    sleep 2
    PORT=18998 BURSTS=100 timeout 120 "$EXAMPLES/fanout_floor" | tee "$FLOOR/fanout.json"
    kill "$SINK_PID" 2>/dev/null || true
fi

# The sink's own ceiling: the same kind of receiver under a plain HTTP load generator.
SINK_PORT=18999
PIPELINE_LOAD_SINK_ONLY="$SINK_PORT" cargo bench --quiet -p pipeline-host --bench load >/dev/null &
SINK_PID=$!
sleep 2
cat > "$OUT/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"type":"log","log":{"blockNumber":"0x1"}}'
LUA
wrk -t2 -c64 -d5s -s "$OUT/post.lua" "http://127.0.0.1:$SINK_PORT/hook" | tee "$OUT/sink-ceiling.txt"
kill "$SINK_PID" 2>/dev/null || true

"$PY" - "$OUT" <<'PYEOF'
import glob, json, os, re, sys
out = sys.argv[1]
reports = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(out, "scenarios", "*.json")))]
text = open(os.path.join(out, "sink-ceiling.txt")).read()
m = re.search(r"Requests/sec:\s+([\d.]+)", text)
ceiling = float(m.group(1)) if m else None
for r in reports:
    r["share_of_sink_ceiling"] = (r["webhooks_per_s_while_running"] / ceiling) if ceiling else None
def floor_1k():
    # The medians of the floor's parts (µs), and their sums: below what no host can go here.
    d = os.path.join(out, "floor")
    if not os.path.exists(os.path.join(d, "fanout.json")):
        return None
    node = json.loads(open(os.path.join(d, "node.json")).read())
    lines = open(os.path.join(d, "fanout.json")).read().splitlines()
    fanout = {r["shape"]: r for r in (json.loads(line) for line in lines if line.strip())}
    def write(store):
        medians = [float(m) for m in re.findall(r"median (\d+)", open(os.path.join(d, f"write-{store}.txt")).read())]
        return sorted(medians)[len(medians) // 2] if medians else None
    f = {"node_answer_us": node["answered_us"]["p50"], "sqlite_write_us": write("sqlite"),
         "postgres_write_us": write("postgres"), "fanout_50th_answer_us": {k: v["median_us"] for k, v in fanout.items()},
         "fanout_cpu_us_per_post": {k: v["cpu_us_per_post"] for k, v in fanout.items()}}
    raw = f["fanout_50th_answer_us"].get("raw")
    for store in ("sqlite", "postgres"):
        if raw is not None and f[f"{store}_write_us"] is not None:
            f[f"sum_{store}_us"] = f["node_answer_us"] + f[f"{store}_write_us"] + raw
    return f
json.dump({"sink_ceiling_requests_per_s": ceiling, "floor_1k": floor_1k(), "scenarios": reports}, open(os.path.join(out, "report.json"), "w"), indent=2)
import matplotlib; matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(8, 5))
for store, marker in (("sqlite", "o"), ("postgres", "s")):
    rows = sorted((r for r in reports if r["store"] == store and r["subscriptions"] == 100 and r.get("endpoints", 1) == 1), key=lambda r: r["offered_events_per_s"])
    if not rows: continue
    x = [r["offered_events_per_s"] for r in rows]
    for p, style in (("p50", "-"), ("p99", "--")):
        ax.plot(x, [r["latency_ms"][p] for r in rows], style, marker=marker, label=f"{store} {p}")
ax.set_xscale("log"); ax.set_yscale("log")
ax.set_xlabel("offered events/s (100 subscriptions, one endpoint)"); ax.set_ylabel("head published → webhook received (ms)")
ax.axhline(5, color="grey", linewidth=0.5); ax.legend(); ax.grid(True, which="both", linewidth=0.3)
fig.savefig(os.path.join(out, "latency.png"), dpi=110, bbox_inches="tight")
print(f"wrote {out}/report.json and {out}/latency.png; sink ceiling {ceiling} requests/s")
PYEOF
