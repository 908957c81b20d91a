-- Stored OpenAI keys: ciphertext only, plus what is needed to show and find them without decrypting.
CREATE TABLE api_keys (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    label                text        NOT NULL,
    kind                 text        NOT NULL DEFAULT 'standard' CHECK (kind IN ('standard', 'admin')),
    ciphertext           bytea,      -- NULL once the key is deleted: the secret goes, the history stays
    fingerprint          char(16)    NOT NULL,
    prefix               text        NOT NULL,
    last4                text        NOT NULL,
    active               boolean     NOT NULL DEFAULT true,
    created_at           timestamptz NOT NULL DEFAULT now(),
    deleted_at           timestamptz,
    last_probe_at        timestamptz,
    last_success_at      timestamptz,
    last_error           text,
    last_status          integer,
    last_latency_ms      double precision,
    consecutive_failures integer     NOT NULL DEFAULT 0,
    CONSTRAINT deleted_keys_hold_no_secret CHECK (deleted_at IS NULL OR ciphertext IS NULL),
    CONSTRAINT live_keys_hold_a_secret CHECK (deleted_at IS NOT NULL OR ciphertext IS NOT NULL)
);

-- One live row per key; a deleted key may be added again later.
CREATE UNIQUE INDEX api_keys_live_fingerprint ON api_keys (fingerprint) WHERE deleted_at IS NULL;
CREATE INDEX api_keys_fingerprint ON api_keys (fingerprint);
