-- Scoped API tokens. Only the sha256 of a token is stored; the token itself is shown once.
CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    scope         TEXT NOT NULL,          -- read | write | admin
    token_sha256  TEXT NOT NULL UNIQUE,   -- hex
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    revoked_at    INTEGER
);
