-- Pipeline schema (PostgreSQL). Times are Unix milliseconds. Kept in step with ../sqlite.
CREATE TABLE plugins (
    id          TEXT PRIMARY KEY,          -- hex sha256 of the module bytes
    name        TEXT NOT NULL,
    size        BIGINT NOT NULL,
    wasm        BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE endpoints (
    id                          TEXT PRIMARY KEY,
    url                         TEXT NOT NULL,
    description                 TEXT NOT NULL DEFAULT '',
    secret                      TEXT NOT NULL,
    previous_secret             TEXT,
    previous_secret_expires_at  BIGINT,
    status                      TEXT NOT NULL,      -- enabled | disabled
    disabled_reason             TEXT,
    created_at                  BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL
);

CREATE TABLE subscriptions (
    id              TEXT PRIMARY KEY,
    endpoint_id     TEXT NOT NULL REFERENCES endpoints(id),
    chain_id        BIGINT NOT NULL,
    addresses       TEXT,                  -- JSON array or NULL (any)
    topics          TEXT,                  -- JSON positional filter or NULL (any)
    plugin_id       TEXT REFERENCES plugins(id),
    plugin_config   TEXT,                  -- JSON
    confirmations   BIGINT NOT NULL DEFAULT 0,
    status          TEXT NOT NULL,         -- active | paused | quarantined
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE chain_cursors (
    chain_id      BIGINT PRIMARY KEY,
    block_number  BIGINT NOT NULL,
    block_hash    TEXT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE deliveries (
    seq               BIGSERIAL PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,  -- the webhook-id: deterministic, so replays collapse
    subscription_id   TEXT NOT NULL,
    endpoint_id       TEXT NOT NULL,
    chain_id          BIGINT NOT NULL,
    event_type        TEXT NOT NULL,
    block_number      BIGINT NOT NULL,
    body              TEXT NOT NULL,
    status            TEXT NOT NULL,         -- pending | delivered | retrying | dead
    attempts          BIGINT NOT NULL DEFAULT 0,
    next_attempt_at   BIGINT NOT NULL,
    lease_until       BIGINT NOT NULL DEFAULT 0,
    last_status_code  BIGINT,
    last_error        TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, status);

CREATE TABLE delivery_attempts (
    delivery_id    TEXT NOT NULL,
    attempt        BIGINT NOT NULL,
    status_code    BIGINT,
    latency_ms     BIGINT NOT NULL,
    error          TEXT,
    response_body  TEXT,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

CREATE TABLE parked_events (
    seq              BIGSERIAL PRIMARY KEY,
    subscription_id  TEXT NOT NULL,
    chain_id         BIGINT NOT NULL,
    event_type       TEXT NOT NULL,
    log              TEXT NOT NULL,
    error            TEXT NOT NULL,
    event_index      BIGINT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX parked_events_subscription ON parked_events (subscription_id, seq);

CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
