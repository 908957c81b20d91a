-- Key health from probe results (written by the ledger). `key_probe_results` remembers which results were applied
-- since each key's last success, so that a re-sent or redelivered result is applied once, and a result arriving late
-- (out of order) still counts exactly once towards `consecutive_failures`.
ALTER TABLE api_keys ADD COLUMN last_outcome text;

CREATE TABLE key_probe_results (
    key_id     bigint      NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    request_id text        NOT NULL,
    probed_at  timestamptz NOT NULL,
    ok         boolean     NOT NULL,
    PRIMARY KEY (key_id, request_id)
);
CREATE INDEX key_probe_results_by_time ON key_probe_results (key_id, probed_at);
