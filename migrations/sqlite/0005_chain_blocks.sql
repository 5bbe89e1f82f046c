-- The reorg window, durable: recent blocks as ingest applied them (hash, parent hash, and the logs
-- some subscription's filter matched, so the ones that may have been delivered), kept by hash so
-- that a restart rebuilds exactly the branch the stored cursor names by walking parent hashes back
-- from it, and a reorg arriving after the restart still withdraws what was delivered.
CREATE TABLE chain_blocks (
    chain_id      INTEGER NOT NULL,
    block_hash    TEXT NOT NULL,
    block_number  INTEGER NOT NULL,
    parent_hash   TEXT NOT NULL,
    logs          TEXT NOT NULL,
    PRIMARY KEY (chain_id, block_hash)
);
CREATE INDEX chain_blocks_by_number ON chain_blocks (chain_id, block_number);
