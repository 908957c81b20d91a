-- Key health moves out of api_keys (the api's table) into a table of the ledger's own: the ledger writes it from
-- probe results, the api reads it for GET /keys. One row per key that was ever probed.
CREATE TABLE key_health (
    key_id               bigint      PRIMARY KEY REFERENCES api_keys (id),
    last_probe_at        timestamptz,
    last_success_at      timestamptz,
    last_outcome         text,
    last_error           text,
    last_status          integer,
    last_latency_ms      double precision,
    consecutive_failures integer     NOT NULL DEFAULT 0
);

INSERT INTO key_health (key_id, last_probe_at, last_success_at, last_outcome, last_error, last_status, last_latency_ms,
                        consecutive_failures)
SELECT id, last_probe_at, last_success_at, last_outcome, last_error, last_status, last_latency_ms, consecutive_failures
FROM api_keys
WHERE last_probe_at IS NOT NULL OR last_success_at IS NOT NULL OR consecutive_failures <> 0;

-- api_keys' old health columns (last_probe_at … consecutive_failures) are left in place, unread and unwritten from
-- this release on, so that replicas of the previous release keep working during a rolling upgrade; a later release
-- drops them (docs/deploy.md, "Upgrading").
