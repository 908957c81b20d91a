-- A coarser tier for high-cardinality dimension groupings (a customer id): no hourly roll-up, whose rows would hold
-- about two events each, but daily and monthly ones. Summaries over such a grouping read whole months (or a month
-- minus the days outside the range), whole days, and the partial days at the edges from the records (or the day
-- minus the records outside the range, whichever part is shorter): as exact as before, with a handful of rows per
-- value instead of one per active day and hour.
--
-- Upgrade: every grouping already listed keeps its hourly tier (`coarse` false) and its rows, untouched. A ledger
-- started with DIMENSION_COARSE naming one of them turns it coarse and marks it incomplete; its rebuild then sums the
-- daily and monthly roll-ups again from usage_events and drops its hourly rows (docs/dimensions.md).
ALTER TABLE usage_rollup_groupings ADD COLUMN coarse boolean NOT NULL DEFAULT false;

CREATE TABLE usage_rollup_dimension_monthly (
    grouping            text        NOT NULL,
    bucket              date        NOT NULL,  -- the first day of the UTC month
    value1              text,
    value2              text,
    events              bigint      NOT NULL DEFAULT 0,
    requests            bigint      NOT NULL DEFAULT 0,
    input_tokens        bigint      NOT NULL DEFAULT 0,
    cached_input_tokens bigint      NOT NULL DEFAULT 0,
    output_tokens       bigint      NOT NULL DEFAULT 0,
    cost                numeric(30, 12) NOT NULL DEFAULT 0,
    unpriced_events     bigint      NOT NULL DEFAULT 0,
    CONSTRAINT usage_rollup_dimension_monthly_group UNIQUE NULLS NOT DISTINCT (grouping, bucket, value1, value2)
) WITH (fillfactor = 80);

CREATE INDEX usage_rollup_dimension_monthly_value1 ON usage_rollup_dimension_monthly (grouping, value1, bucket);

CREATE OR REPLACE FUNCTION clear_usage() RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
AS $$ TRUNCATE usage_events, usage_rollup_hourly, usage_rollup_daily, usage_rollup_pending,
               usage_rollup_dimension_hourly, usage_rollup_dimension_daily, usage_rollup_dimension_monthly,
               usage_rollup_dimension_pending $$;
