-- Usage events as recorded by the ledger: one row per (source, event_id), whatever number of times it arrives.
CREATE TABLE usage_events (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source              text        NOT NULL,
    event_id            text        NOT NULL,
    occurred_at         timestamptz NOT NULL,
    recorded_at         timestamptz NOT NULL DEFAULT now(),
    provider            text        NOT NULL,
    model               text        NOT NULL,
    key_id              bigint,     -- the stored key it is attributed to, when the event named one we hold
    key_fingerprint     text,       -- as reported, even when no stored key matches
    input_tokens        bigint      NOT NULL CHECK (input_tokens >= 0),
    cached_input_tokens bigint      NOT NULL CHECK (cached_input_tokens >= 0),
    output_tokens       bigint      NOT NULL CHECK (output_tokens >= 0),
    requests            bigint      NOT NULL CHECK (requests >= 0),
    cost                numeric(30, 12),  -- USD; NULL while the model is unknown to the price data
    price_source        text,       -- which price entry priced it, e.g. "genai-prices 0.2.3 openai/gpt-4o-mini"
    attributes          jsonb       NOT NULL DEFAULT '{}'::jsonb
);

CREATE UNIQUE INDEX usage_events_source_event_id ON usage_events (source, event_id);
-- GET /data: newest first, keyset-paginated on (occurred_at, id).
CREATE INDEX usage_events_occurred ON usage_events (occurred_at DESC, id DESC);
-- `reprice` finds what is still unpriced without scanning everything.
CREATE INDEX usage_events_unpriced ON usage_events (id) WHERE cost IS NULL;

-- Roll-ups kept current in the ledger's own transaction, so that summaries over months read a few thousand rows.
-- key_id NULL means "not attributed to a stored key"; NULLS NOT DISTINCT makes it one group like any other.
CREATE TABLE usage_rollup_hourly (
    bucket              timestamptz NOT NULL,  -- start of the UTC hour
    key_id              bigint,
    source              text        NOT NULL,
    provider            text        NOT NULL,
    model               text        NOT NULL,
    events              bigint      NOT NULL DEFAULT 0,
    requests            bigint      NOT NULL DEFAULT 0,
    input_tokens        bigint      NOT NULL DEFAULT 0,
    cached_input_tokens bigint      NOT NULL DEFAULT 0,
    output_tokens       bigint      NOT NULL DEFAULT 0,
    cost                numeric(30, 12) NOT NULL DEFAULT 0,
    unpriced_events     bigint      NOT NULL DEFAULT 0,
    CONSTRAINT usage_rollup_hourly_group UNIQUE NULLS NOT DISTINCT (bucket, key_id, source, provider, model)
);

CREATE TABLE usage_rollup_daily (
    bucket              date        NOT NULL,  -- the UTC day
    key_id              bigint,
    source              text        NOT NULL,
    provider            text        NOT NULL,
    model               text        NOT NULL,
    events              bigint      NOT NULL DEFAULT 0,
    requests            bigint      NOT NULL DEFAULT 0,
    input_tokens        bigint      NOT NULL DEFAULT 0,
    cached_input_tokens bigint      NOT NULL DEFAULT 0,
    output_tokens       bigint      NOT NULL DEFAULT 0,
    cost                numeric(30, 12) NOT NULL DEFAULT 0,
    unpriced_events     bigint      NOT NULL DEFAULT 0,
    CONSTRAINT usage_rollup_daily_group UNIQUE NULLS NOT DISTINCT (bucket, key_id, source, provider, model)
);
