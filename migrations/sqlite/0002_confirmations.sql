-- Per-subscription confirmations: a delivery held until its chain's cursor reaches release_block.
ALTER TABLE deliveries ADD COLUMN release_block INTEGER;
CREATE INDEX deliveries_held ON deliveries (chain_id, release_block) WHERE release_block IS NOT NULL;
