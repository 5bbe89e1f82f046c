-- The stored reorg window's logs, compressed: the same JSON array of the node's log objects, LZ4
-- (block format, its length first), about a fifth of the text. With every log of a block matched,
-- the text form wrote almost as many bytes as the deliveries' bodies. New rows leave `logs` empty
-- and fill `logs_lz4`; rows written before keep their text in `logs`.
ALTER TABLE chain_blocks ADD COLUMN logs_lz4 BLOB;
