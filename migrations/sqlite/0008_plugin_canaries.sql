-- Plugin canaries (issue 12): a candidate plugin run in shadow on a subscription's live batches.
-- One per subscription. The counters are added to by the host that matches the subscription's
-- chain (off the hot path); any replica answers GET /v1/subscriptions/{id}/canary from here.
-- id is new for every canary, so results of a discarded or promoted one never land on its successor.
CREATE TABLE canaries (
    id                 TEXT PRIMARY KEY,
    subscription_id    TEXT NOT NULL UNIQUE,
    plugin_id          TEXT NOT NULL,
    plugin_config      TEXT,                      -- JSON
    events_compared    INTEGER NOT NULL DEFAULT 0,
    same               INTEGER NOT NULL DEFAULT 0,
    only_live_kept     INTEGER NOT NULL DEFAULT 0,
    only_canary_kept   INTEGER NOT NULL DEFAULT 0,
    data_differs       INTEGER NOT NULL DEFAULT 0,
    batches_compared   INTEGER NOT NULL DEFAULT 0,
    batches_skipped    INTEGER NOT NULL DEFAULT 0,     -- the canary's queue was full: not compared
    events_skipped     INTEGER NOT NULL DEFAULT 0,
    traps              INTEGER NOT NULL DEFAULT 0,
    out_of_fuel        INTEGER NOT NULL DEFAULT 0,
    bad_output         INTEGER NOT NULL DEFAULT 0,
    other_failures     INTEGER NOT NULL DEFAULT 0,
    last_failure       TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);

-- The first differing events of a canary (at most 100, enforced by the writer's INSERT), with
-- both outputs as JSON ({"kept": bool, "data": value}).
CREATE TABLE canary_examples (
    canary_id     TEXT NOT NULL,
    block_number  INTEGER NOT NULL,
    block_hash    TEXT NOT NULL,
    tx_hash       TEXT NOT NULL,
    log_index     INTEGER NOT NULL,
    event_type    TEXT NOT NULL,
    live          TEXT NOT NULL,
    canary        TEXT NOT NULL,
    PRIMARY KEY (canary_id, block_hash, log_index, event_type)
);
