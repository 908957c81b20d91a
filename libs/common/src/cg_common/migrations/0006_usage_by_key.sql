-- GET /data?key_id=…: a key's records newest first, keyset-paginated, found through this index however few the key
-- has (through usage_events_occurred alone, a key with no recent usage meant reading the whole time range).
-- Built in the migration's transaction: on a large existing table it holds the ledger's inserts until it is built.
CREATE INDEX usage_events_key ON usage_events (key_id, occurred_at DESC, id DESC);
