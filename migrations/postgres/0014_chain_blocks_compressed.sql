-- The stored reorg window's logs, compressed: the same JSON array of the node's log objects, LZ4
-- (block format, its length first), about a fifth of the text. The server compressed the text
-- form itself (pglz, in TOAST) to about the same size; compressed by the host, the server no
-- longer spends its CPU on it. New rows leave `logs` empty and fill `logs_lz4`; rows written
-- before keep their text in `logs`. EXTERNAL: stored out of line as it is — the server would
-- only try to compress LZ4's output again.
ALTER TABLE chain_blocks ADD COLUMN logs_lz4 BYTEA;
ALTER TABLE chain_blocks ALTER COLUMN logs_lz4 SET STORAGE EXTERNAL;
