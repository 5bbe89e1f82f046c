-- Precompiled plugin code, per engine configuration: restarts load it instead of recompiling.
-- Only ever written by the host itself (wasmtime's deserialization trusts these bytes).
CREATE TABLE plugin_artifacts (
    plugin_id   TEXT NOT NULL REFERENCES plugins(id) ON DELETE CASCADE,
    engine      TEXT NOT NULL,
    artifact    BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (plugin_id, engine)
);
