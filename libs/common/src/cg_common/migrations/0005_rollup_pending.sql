-- Roll-up changes not yet folded into the roll-ups. Each ledger batch appends its hourly sums here in its own
-- transaction (a plain append: no index to maintain, no row for concurrent batches to wait on), and the ledger folds
-- them into usage_rollup_hourly and usage_rollup_daily every second or so. Summaries add what is still pending, so they
-- are exact at every moment; folding many batches at once turns thousands of upserts into one per group.
CREATE TABLE usage_rollup_pending (
    bucket              timestamptz NOT NULL,  -- start of the UTC hour
    key_id              bigint,
    source              text        NOT NULL,
    provider            text        NOT NULL,
    model               text        NOT NULL,
    events              bigint      NOT NULL,
    requests            bigint      NOT NULL,
    input_tokens        bigint      NOT NULL,
    cached_input_tokens bigint      NOT NULL,
    output_tokens       bigint      NOT NULL,
    cost                numeric(30, 12) NOT NULL,
    unpriced_events     bigint      NOT NULL
);

-- Folding updates roll-up rows in place; room on each page lets PostgreSQL do it without touching the index (HOT).
ALTER TABLE usage_rollup_hourly SET (fillfactor = 80);
ALTER TABLE usage_rollup_daily SET (fillfactor = 80);
